/*
 * The least an exec'd CNI plugin can do: one RTM_NEWLINK that moves a
 * link into a network namespace, renames it and optionally sets it up,
 * and nothing else (no config, no records, no locks). Built static by
 * benches/cni/bed.rs, so that only the exec and libc's start stand between
 * the runtime and the kernel; baseline (d) of hack/bench.d/cni.
 *
 * usage: mover RUN_IN_NETNS|- IFNAME TARGET_NETNS NEW_NAME up|-
 * RUN_IN_NETNS is entered first ("-": stay), as a DEL runs in the pod;
 * "up" sets IFF_UP in the same message, "-" leaves the flags alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what, int err)
{
	fprintf(stderr, "mover: %s: %s\n", what, strerror(err));
	return 1;
}

static void put_attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
}

int main(int argc, char **argv)
{
	if (argc != 6 || strlen(argv[4]) >= IFNAMSIZ ||
	    (strcmp(argv[5], "up") != 0 && strcmp(argv[5], "-") != 0)) {
		fprintf(stderr, "usage: mover RUN_IN_NETNS|- IFNAME TARGET_NETNS NEW_NAME up|-\n");
		return 2;
	}
	if (strcmp(argv[1], "-") != 0) {
		int here = open(argv[1], O_RDONLY | O_CLOEXEC);
		if (here < 0 || setns(here, CLONE_NEWNET) < 0)
			return fail(argv[1], errno);
		close(here);
	}
	int target = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return fail(argv[3], errno);
	int sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (sock < 0)
		return fail("netlink socket", errno);
	unsigned index = if_nametoindex(argv[2]);
	if (index == 0)
		return fail(argv[2], errno);

	union {
		struct nlmsghdr h;
		char buf[256];
	} req;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_type = RTM_NEWLINK;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.h.nlmsg_seq = 1;
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	struct ifinfomsg *ifi = NLMSG_DATA(&req.h);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = (int)index;
	if (strcmp(argv[5], "up") == 0) {
		ifi->ifi_flags = IFF_UP;
		ifi->ifi_change = IFF_UP;
	}
	put_attr(&req.h, IFLA_NET_NS_FD, &target, sizeof(target));
	put_attr(&req.h, IFLA_IFNAME, argv[4], strlen(argv[4]) + 1);

	if (send(sock, &req, req.h.nlmsg_len, 0) < 0)
		return fail("send", errno);
	union {
		struct nlmsghdr h;
		char buf[1024];
	} reply;
	ssize_t n = recv(sock, &reply, sizeof(reply), 0);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || reply.h.nlmsg_type != NLMSG_ERROR)
		return fail("recv", n < 0 ? errno : EPROTO);
	struct nlmsgerr *err = NLMSG_DATA(&reply.h);
	if (err->error != 0)
		return fail("RTM_NEWLINK", -err->error);
	return 0;
}

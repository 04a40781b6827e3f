//! The `fake-apiserver` binary: serves the objects of a directory and
//! picks up a file dropped in later.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn node_names(api: &Api<Node>) -> Vec<String> {
    match api.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn wait_for(api: &Api<Node>, want: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = node_names(api).await;
        if names == want || Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_a_directory_and_picks_up_new_files() {
    let dir = std::env::temp_dir().join(format!("fake-apiserver-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: a\n",
    )
    .unwrap();
    // A free port: bind, read it, release it for the child.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _child = Killed(
        Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--poll-ms",
                "50",
                "--dir",
            ])
            .arg(&dir)
            .spawn()
            .unwrap(),
    );
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let api: Api<Node> = Api::all(kube::Client::try_from(config).unwrap());
    assert_eq!(wait_for(&api, &["a"]).await, ["a"]);
    std::fs::write(
        dir.join("b.json"),
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"b"}}"#,
    )
    .unwrap();
    assert_eq!(wait_for(&api, &["a", "b"]).await, ["a", "b"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

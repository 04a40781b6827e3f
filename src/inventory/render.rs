//! The human table `fastpath list` prints.

use std::fmt::Write;

use super::{Ids, Inventory, Pf, Vf};

const UNKNOWN: &str = "-";

/// A cell's text, with control characters and whitespace from a malformed
/// tree replaced so that one value can never break the table's layout.
fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| printable(&v.to_string()))
        .unwrap_or_else(|| UNKNOWN.to_string())
}

fn printable(s: &str) -> String {
    if s.is_empty() {
        return "\"\"".to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn id_pair(ids: Option<&Ids>) -> String {
    ids.map(|i| format!("{}:{}", i.vendor, i.device))
        .unwrap_or_else(|| UNKNOWN.to_string())
}

fn id_name(ids: Option<&Ids>) -> String {
    match ids {
        Some(Ids {
            vendor_name: Some(v),
            device_name: Some(d),
            ..
        }) => format!("{v} {d}"),
        Some(Ids {
            vendor_name: Some(v),
            ..
        }) => format!("{v} (unknown device)"),
        _ => UNKNOWN.to_string(),
    }
}

/// Writes rows as left-aligned columns separated by two spaces; the last
/// column is not padded.
fn columns(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn pf_line(pf: &Pf) -> String {
    let nd = pf.netdev.as_ref();
    format!(
        "PF {}  netdev {}  driver {}  link {}  VFs {}/{}  NUMA {}  {} {}",
        pf.pci_address,
        opt(nd.map(|n| &n.name)),
        opt(pf.driver.as_ref()),
        opt(nd.and_then(|n| n.operstate.as_ref())),
        opt(pf.num_vfs),
        pf.total_vfs,
        opt(pf.numa_node),
        id_pair(pf.ids.as_ref()),
        id_name(pf.ids.as_ref()),
    )
}

fn vf_row(vf: &Vf) -> Vec<String> {
    let nd = vf.netdev.as_ref();
    vec![
        vf.index.to_string(),
        vf.pci_address.to_string(),
        id_pair(vf.ids.as_ref()),
        opt(vf.driver.as_ref()),
        opt(nd.map(|n| &n.name)),
        opt(nd.and_then(|n| n.mac.as_ref())),
        opt(vf.link_type.map(|l| l.as_str())),
        opt(vf.numa_node),
        opt(vf.iommu_group),
        id_name(vf.ids.as_ref()),
    ]
}

/// Renders the inventory as the `fastpath list` table.
pub fn render_table(inv: &Inventory) -> String {
    let mut out = String::new();
    if inv.pfs.is_empty() {
        out.push_str("no SR-IOV capable PFs found\n");
        return out;
    }
    for (i, pf) in inv.pfs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&pf_line(pf));
        out.push('\n');
        if pf.vfs.is_empty() {
            out.push_str("  (no VFs)\n");
            continue;
        }
        let header = [
            "VF", "PCI", "ID", "DRIVER", "NETDEV", "MAC", "LINK", "NUMA", "IOMMU", "NAME",
        ];
        let mut rows = vec![header.iter().map(|s| s.to_string()).collect()];
        rows.extend(pf.vfs.iter().map(vf_row));
        columns(&mut out, "  ", &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_layout() {
        assert_eq!(opt(Some("up")), "up");
        assert_eq!(opt(Some("a b\nc\x1b[31m")), "a?b?c?[31m");
        assert_eq!(opt(Some("")), "\"\"");
        assert_eq!(opt(None::<u32>), "-");
    }
}

//! The doctor report as text for a terminal.

use std::fmt::Write;

use super::{Report, Status};

/// One line per check (`ok`/`warn`/`FAIL`/`skip`, name, what was found),
/// the fix indented under it, then the verdict.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    let width = report
        .findings
        .iter()
        .map(|f| f.check.as_str().len())
        .max()
        .unwrap_or(0);
    for f in &report.findings {
        let fatal = if f.fatal { "" } else { " (not fatal)" };
        let _ = writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            f.status.as_str(),
            f.check.as_str(),
            f.message
        );
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "{:<4}  {:<width$}  fix{fatal}: {fix}", "", "");
        }
    }
    let failed: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .map(|f| f.check.as_str())
        .collect();
    if report.ready {
        let _ = writeln!(out, "node is ready for fastpath");
    } else {
        let _ = writeln!(out, "node is NOT ready: {} failed", failed.join(", "));
    }
    out
}

//! `troupe usage`: a running node's token use and cost (`GET /api/v1/usage`), as a table.

use std::process::ExitCode;

use serde_json::Value;

use crate::admin::request;
use crate::cli::UsageArgs;

/// The table's number columns: heading and the report's key.
const COLUMNS: [(&str, &str); 7] = [
    ("TURNS", "turns"),
    ("CALLS", "model_calls"),
    ("INPUT", "input_tokens"),
    ("CACHED", "cache_read_tokens"),
    ("OUTPUT", "output_tokens"),
    ("TOTAL", "total_tokens"),
    ("COST", "cost"),
];

pub(crate) async fn run(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let mut url = reqwest::Url::parse("http://node/api/v1/usage")?;
    url.query_pairs_mut()
        .append_pair("by", &args.by)
        .append_pair("since", &args.since);
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let report = request(&args.node, reqwest::Method::GET, &path, None).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// A number of the report as the table shows it: costs with six decimals.
fn cell(totals: &Value, key: &str) -> String {
    match key {
        "cost" => format!("{:.6}", totals[key].as_f64().unwrap_or_default()),
        _ => totals[key].as_u64().unwrap_or_default().to_string(),
    }
}

/// The report as aligned columns, with a total line.
fn table(report: &Value) -> String {
    let by = report["by"].as_str().unwrap_or("group");
    let since = report["since"].as_i64().unwrap_or_default();
    let since = jiff::Timestamp::from_second(since)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = vec![
        std::iter::once(by.to_uppercase())
            .chain(COLUMNS.iter().map(|(heading, _)| (*heading).to_owned()))
            .collect(),
    ];
    let lines = report["rows"].as_array().into_iter().flatten();
    for row in lines.chain(std::iter::once(&report["total"])) {
        let key = row["key"].as_str().unwrap_or("total").to_owned();
        rows.push(
            std::iter::once(key)
                .chain(COLUMNS.iter().map(|(_, field)| cell(row, field)))
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("usage since {since}, by {by}\n");
    for row in &rows {
        let mut line = format!("{:<width$}", row[0], width = widths[0]);
        for (cell, width) in row.iter().zip(&widths).skip(1) {
            line.push_str(&format!("  {cell:>width$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let unpriced = report["total"]["unpriced_turns"].as_u64().unwrap_or(0);
    if unpriced > 0 {
        out.push_str(&format!(
            "{unpriced} turns used models without a price in [[prices]]; their cost counts as 0\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_aligns_each_group_and_the_total() {
        let totals = |turns: u64, cost: f64| {
            json!({"turns": turns, "model_calls": turns, "input_tokens": 1200, "cache_read_tokens": 0,
                "output_tokens": 30, "total_tokens": 1230, "cost": cost, "unpriced_turns": 0})
        };
        let mut ann = totals(2, 0.0123);
        ann["key"] = json!("person:ann");
        let report = json!({"since": 1_796_601_600, "by": "person", "rows": [ann],
            "total": totals(2, 0.0123)});
        assert_eq!(
            table(&report),
            "usage since 2026-12-07 00:00 UTC, by person\n\
             PERSON      TURNS  CALLS  INPUT  CACHED  OUTPUT  TOTAL      COST\n\
             person:ann      2      2   1200       0      30   1230  0.012300\n\
             total           2      2   1200       0      30   1230  0.012300\n"
        );
    }
}

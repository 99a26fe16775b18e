//! Ceph's text building blocks: byte and count units (`byte_u_t`, `si_u_t`), `TextTable`,
//! weights, percentages, timestamps, and the JSON formatters.

use serde_json::Value;

/// How a command's data is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    /// Compact, no trailing newline (Ceph's `json`).
    Json,
    /// Four-space indent with a trailing newline (Ceph's `json-pretty`).
    JsonPretty,
}

impl Format {
    pub fn is_json(self) -> bool {
        self != Format::Plain
    }
}

/// Serializes `v` as Ceph's JSON formatters do.
pub fn json_bytes(v: &Value, format: Format) -> Vec<u8> {
    if format != Format::JsonPretty {
        return serde_json::to_vec(v).unwrap_or_default();
    }
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if serde::Serialize::serialize(v, &mut ser).is_err() {
        return Vec::new();
    }
    out.push(b'\n');
    out
}

/// Renders either form, building only the one asked for.
pub fn render(format: Format, json: impl FnOnce() -> Value, plain: impl FnOnce() -> String) -> Vec<u8> {
    if format.is_json() {
        json_bytes(&json(), format)
    } else {
        plain().into_bytes()
    }
}

/// Ceph's `byte_u_t`: `0 B`, `1.2 KiB`, `30 GiB`.
pub fn bytes(v: u64) -> String {
    const UNITS: [&str; 7] = [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"];
    let (mut n, mut index) = (v, 0usize);
    while n >= 1024 && index < UNITS.len() - 1 {
        n /= 1024;
        index += 1;
    }
    format_u(v, n, index, 1u64 << (10 * index), UNITS[index])
}

/// Ceph's `si_u_t`: `999`, `1k`, `22.66k`.
pub fn si(v: u64) -> String {
    const UNITS: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let (mut n, mut index, mut mult) = (v, 0usize, 1u64);
    while n >= 1000 && index < UNITS.len() - 1 {
        n /= 1000;
        index += 1;
        mult *= 1000;
    }
    format_u(v, n, index, mult, UNITS[index])
}

/// Ceph's `format_u`: whole numbers bare, otherwise the most decimals that fit 7 characters.
fn format_u(v: u64, n: u64, index: usize, mult: u64, unit: &str) -> String {
    if index == 0 || v.is_multiple_of(mult) {
        return format!("{n}{unit}");
    }
    let x = v as f64 / mult as f64;
    (0..=2)
        .rev()
        .map(|prec| format!("{x:.prec$}{unit}"))
        .find(|s| s.len() <= 7)
        .unwrap_or_else(|| format!("{x:.0}{unit}"))
}

/// Ceph's `percentify`: two decimals, `0` below 0.01.
pub fn percent(pct: f64) -> String {
    if pct < 0.01 {
        "0".to_string()
    } else {
        format!("{pct:.2}")
    }
}

/// Ceph's `weightf_t`: five decimals, `0` for nothing.
pub fn weight(w: f64) -> String {
    if w < -0.01 {
        "-".to_string()
    } else if w < 0.000001 {
        "0".to_string()
    } else {
        format!("{w:.5}")
    }
}

/// A 16.16 fixed-point weight as a float.
pub fn fixed_16_16(w: u32) -> f64 {
    w as f64 / 65536.0
}

/// How C++'s `operator<<` prints a float with default precision (6 significant digits, no
/// trailing zeros): `1`, `0.5`, `0.95`.
pub fn float_g(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Ceph's vector printing: `[1,2,3]`.
pub fn id_list(ids: &[u32]) -> String {
    let inner: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]", inner.join(","))
}

/// A primary in Ceph's style: the id, or -1 for none.
pub fn primary(ids: &[u32]) -> i64 {
    ids.first().map_or(-1, |&id| id as i64)
}

/// Ceph's `utime_t` in ISO form: `2021-06-01T10:00:00.000000+0000` (UTC).
pub fn utime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000+0000", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// An address as Ceph's legacy `entity_addr_t` string: `127.0.0.1:6789/0`.
pub fn legacy_addr(addr: &str) -> String {
    if addr.contains('/') {
        addr.to_string()
    } else {
        format!("{addr}/0")
    }
}

/// An address as Ceph prints an `entity_addrvec_t` of one msgr2 address: `v2:127.0.0.1:3300/0`.
pub fn v2_addr(addr: &str) -> String {
    format!("v2:{}", legacy_addr(addr))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Ceph's `TextTable`: columns padded to their widest cell, separated by two spaces.
pub struct Table {
    heads: Vec<(String, Align, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as (heading, heading alignment, cell alignment).
    pub fn new(cols: &[(&str, Align, Align)]) -> Self {
        let heads = cols.iter().map(|(h, ha, ca)| (h.to_string(), *ha, *ca)).collect();
        Table { heads, rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.heads.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.heads.len())
            .map(|i| {
                let cells = self.rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count()));
                cells.chain([self.heads[i].0.chars().count()]).max().unwrap_or(0)
            })
            .collect();
        let heading: Vec<(String, Align)> = self.heads.iter().map(|h| (h.0.clone(), h.1)).collect();
        let mut out = line(&heading, &widths);
        for row in &self.rows {
            let cells: Vec<(String, Align)> =
                row.iter().zip(&self.heads).map(|(c, h)| (c.clone(), h.2)).collect();
            out.push_str(&line(&cells, &widths));
        }
        out
    }
}

fn line(cells: &[(String, Align)], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|((text, align), &w)| match align {
            Align::Left => format!("{text:<w$}"),
            Align::Right => format!("{text:>w$}"),
        })
        .collect();
    padded.join("  ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units_match_ceph() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(1234), "1.2 KiB");
        assert_eq!(bytes(30 << 30), "30 GiB");
        assert_eq!(bytes((3 << 30) + (5 << 20)), "3.0 GiB");
        assert_eq!(bytes(2_411_724), "2.3 MiB");
        assert_eq!(bytes(10239), "10 KiB");
    }

    #[test]
    fn si_units_match_ceph() {
        assert_eq!(si(0), "0");
        assert_eq!(si(999), "999");
        assert_eq!(si(1000), "1k");
        assert_eq!(si(22_660), "22.66k");
        assert_eq!(si(391_130), "391.13k");
    }

    #[test]
    fn small_number_helpers() {
        assert_eq!(percent(0.001), "0");
        assert_eq!(percent(10.016), "10.02");
        assert_eq!(weight(1.0), "1.00000");
        assert_eq!(weight(0.0), "0");
        assert_eq!(float_g(1.0), "1");
        assert_eq!(float_g(0.95), "0.95");
        assert_eq!(id_list(&[1, 2]), "[1,2]");
        assert_eq!(utime(0), "1970-01-01T00:00:00.000000+0000");
        assert_eq!(utime(1_622_541_600), "2021-06-01T10:00:00.000000+0000");
        assert_eq!(legacy_addr("127.0.0.1:3300"), "127.0.0.1:3300/0");
    }

    #[test]
    fn table_pads_and_aligns() {
        let mut t = Table::new(&[("CLASS", Align::Left, Align::Left), ("SIZE", Align::Right, Align::Right)]);
        t.row(vec!["hdd".into(), "5 TiB".into()]);
        assert_eq!(t.render(), "CLASS   SIZE\nhdd    5 TiB\n");
    }

    #[test]
    fn pretty_json_uses_four_spaces() {
        let v = serde_json::json!({"a": 1});
        assert_eq!(json_bytes(&v, Format::JsonPretty), b"{\n    \"a\": 1\n}\n");
        assert_eq!(json_bytes(&v, Format::Json), b"{\"a\":1}");
    }
}

//! Reading a command's arguments the way Ceph's `cmd_getval` does: a missing required argument or
//! one of the wrong type is EINVAL "bad or missing field 'NAME'".

use super::format::Format;
use cairn_types::{Error, OsdId, Result};
use serde_json::{Map, Value};

/// Longest argument list accepted (ids of `osd down` and the like).
const MAX_LIST_ITEMS: usize = 4096;

pub(super) struct Args<'a> {
    obj: &'a Map<String, Value>,
}

pub(super) fn bad_field(name: &str) -> Error {
    Error::einval(format!("bad or missing field '{name}'"))
}

impl<'a> Args<'a> {
    pub fn new(cmd: &'a Value) -> Result<Self> {
        let obj = cmd.as_object().ok_or_else(|| Error::einval("command is not a JSON object"))?;
        Ok(Args { obj })
    }

    /// Whether the argument is present (and not null).
    pub fn has(&self, name: &str) -> bool {
        !matches!(self.obj.get(name), None | Some(Value::Null))
    }

    pub fn prefix(&self) -> Result<&'a str> {
        self.str("prefix")
    }

    /// The output format; `default` when absent or not one Cairn renders.
    pub fn format_or(&self, default: Format) -> Format {
        match self.obj.get("format").and_then(Value::as_str) {
            Some("json") => Format::Json,
            Some("json-pretty") => Format::JsonPretty,
            Some("plain") if default == Format::Plain => Format::Plain,
            _ => default,
        }
    }

    pub fn format(&self) -> Format {
        self.format_or(Format::Plain)
    }

    pub fn str(&self, name: &str) -> Result<&'a str> {
        self.opt_str(name)?.ok_or_else(|| bad_field(name))
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad_field(name)),
        }
    }

    /// A string argument that clients may also send as a number (`"val": 3`).
    pub fn str_or_number(&self, name: &str) -> Result<String> {
        match self.obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            _ => Err(bad_field(name)),
        }
    }

    /// An optional non-negative integer; a decimal string is accepted too.
    pub fn opt_u32(&self, name: &str) -> Result<Option<u32>> {
        let parsed = match self.obj.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match parsed.map(u32::try_from) {
            Some(Ok(v)) => Ok(Some(v)),
            _ => Err(bad_field(name)),
        }
    }

    /// A CephBool: `true`, `"true"`, `"1"`, or the confirmation string itself
    /// (`"--yes-i-really-mean-it"`, as pre-Nautilus clients send it).
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Number(n)) => Ok(n.as_u64().is_some_and(|v| v != 0)),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" | "" => Ok(false),
                s if s.starts_with("--yes-i-really") => Ok(true),
                _ => Err(bad_field(name)),
            },
            Some(_) => Err(bad_field(name)),
        }
    }

    /// Whether an optional `detail`-style choice argument is set to `word`.
    pub fn choice_is(&self, name: &str, word: &str) -> bool {
        match self.obj.get(name) {
            Some(Value::String(s)) => s == word,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(word)),
            _ => false,
        }
    }

    /// A list of strings (`"ids": ["1", "osd.2"]`); a single string or number counts as one.
    pub fn str_list(&self, name: &str) -> Result<Vec<String>> {
        let items = match self.obj.get(name) {
            Some(Value::Array(a)) => a.iter().map(scalar_string).collect::<Option<Vec<_>>>(),
            Some(v) => scalar_string(v).map(|s| vec![s]),
            None => None,
        };
        match items {
            Some(v) if !v.is_empty() && v.len() <= MAX_LIST_ITEMS => Ok(v),
            _ => Err(bad_field(name)),
        }
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Ceph's `parse_osd_id`: `3` or `osd.3`.
pub(super) fn parse_osd_id(word: &str) -> Result<OsdId> {
    let digits = word.strip_prefix("osd.").unwrap_or(word);
    digits.parse::<OsdId>().map_err(|_| Error::einval(format!("invalid osd id '{word}'")))
}

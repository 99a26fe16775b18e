//! `ceph`-style command words to Ceph's JSON monitor commands: `osd pool create volumes 128`
//! becomes `{"prefix": "osd pool create", "pool": "volumes", "pg_num": 128}`.
//!
//! One table of command signatures (Ceph's `MonCommands.h` descriptions, trimmed to what Cairn
//! serves) drives both parsing and the `help` listing. Parsing follows `ceph_argparse`:
//! positional arguments in order, `--name value` / `--name=value` keyword forms, boolean flags
//! such as `--yes-i-really-mean-it`, and `-f json` / `--format json` / `--format=json` anywhere.

use cairn_types::Error;
use serde_json::{Map, Value};

/// What an argument accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// A non-negative integer (Ceph's `CephInt` with `range=0`).
    Int,
    Str,
    /// A pool name (`CephPoolname`).
    Pool,
    /// One of a fixed set of words (`CephChoices`).
    Choices(&'static [&'static str]),
    /// A flag, given as `--name` (`CephBool`).
    Bool,
    /// One or more strings, the rest of the words (`CephString` with `n=N`).
    StrList,
}

#[derive(Debug, Clone, Copy)]
struct ArgDesc {
    name: &'static str,
    ty: Ty,
    req: bool,
}

const fn req(name: &'static str, ty: Ty) -> ArgDesc {
    ArgDesc { name, ty, req: true }
}

const fn opt(name: &'static str, ty: Ty) -> ArgDesc {
    ArgDesc { name, ty, req: false }
}

/// One command: its literal words, its arguments, its help line.
struct Sig {
    words: &'static [&'static str],
    args: &'static [ArgDesc],
    help: &'static str,
}

const DETAIL: Ty = Ty::Choices(&["detail"]);
const POOL_SET_VARS: &[&str] = &["size", "min_size", "pg_num", "pgp_num"];
/// Every variable `osd pool get` answers, and `all`.
const POOL_GET_VARS: &[&str] = &{
    let mut all = [""; cairn_types::map::POOL_GET_VARS.len() + 1];
    let mut i = 0;
    while i < cairn_types::map::POOL_GET_VARS.len() {
        all[i] = cairn_types::map::POOL_GET_VARS[i];
        i += 1;
    }
    all[i] = "all";
    all
};
const POOL_DELETE_ARGS: &[ArgDesc] = &[
    req("pool", Ty::Pool),
    opt("pool2", Ty::Pool),
    opt("yes_i_really_really_mean_it", Ty::Bool),
    opt("yes_i_really_really_mean_it_not_faking", Ty::Bool),
];
const FORMATS: &[&str] = &["json", "json-pretty", "xml", "xml-pretty", "plain", "yaml"];
/// Most near matches listed when nothing matches (as `ceph` does).
const MAX_CLOSEST: usize = 10;

static COMMANDS: &[Sig] = &[
    Sig { words: &["status"], args: &[], help: "show cluster status" },
    Sig { words: &["health"], args: &[opt("detail", DETAIL)], help: "show cluster health" },
    Sig { words: &["df"], args: &[opt("detail", DETAIL)], help: "show cluster free space stats" },
    Sig {
        words: &["mon", "dump"],
        args: &[opt("epoch", Ty::Int)],
        help: "dump formatted monmap (optionally from epoch)",
    },
    Sig { words: &["quorum_status"], args: &[], help: "report status of monitor quorum" },
    Sig { words: &["mon_status"], args: &[], help: "report status of monitors" },
    Sig { words: &["osd", "tree"], args: &[opt("epoch", Ty::Int)], help: "print OSD tree" },
    Sig { words: &["osd", "dump"], args: &[opt("epoch", Ty::Int)], help: "print summary of OSD map" },
    Sig { words: &["osd", "stat"], args: &[], help: "print summary of OSD map" },
    Sig { words: &["osd", "lspools"], args: &[], help: "list pools" },
    Sig { words: &["osd", "pool", "ls"], args: &[opt("detail", DETAIL)], help: "list pools" },
    Sig {
        words: &["osd", "pool", "create"],
        args: &[
            req("pool", Ty::Pool),
            opt("pg_num", Ty::Int),
            opt("pgp_num", Ty::Int),
            opt("pool_type", Ty::Choices(&["replicated", "erasure"])),
            opt("erasure_code_profile", Ty::Str),
            opt("rule", Ty::Str),
            opt("expected_num_objects", Ty::Int),
            opt("size", Ty::Int),
        ],
        help: "create pool",
    },
    Sig { words: &["osd", "pool", "delete"], args: POOL_DELETE_ARGS, help: "delete pool" },
    Sig { words: &["osd", "pool", "rm"], args: POOL_DELETE_ARGS, help: "remove pool" },
    Sig {
        words: &["osd", "pool", "set"],
        args: &[
            req("pool", Ty::Pool),
            req("var", Ty::Choices(POOL_SET_VARS)),
            req("val", Ty::Str),
            opt("yes_i_really_mean_it", Ty::Bool),
        ],
        help: "set pool parameter <var> to <val>",
    },
    Sig {
        words: &["osd", "pool", "get"],
        args: &[req("pool", Ty::Pool), req("var", Ty::Choices(POOL_GET_VARS))],
        help: "get pool parameter <var>",
    },
    Sig {
        words: &["osd", "pool", "application", "enable"],
        args: &[req("pool", Ty::Pool), req("app", Ty::Str), opt("yes_i_really_mean_it", Ty::Bool)],
        help: "enable use of an application <app> [cephfs,rbd,rgw] on pool <poolname>",
    },
    Sig {
        words: &["osd", "pool", "application", "get"],
        args: &[opt("pool", Ty::Pool), opt("app", Ty::Str), opt("key", Ty::Str)],
        help: "get value of key <key> of application <app> on pool <poolname>",
    },
    Sig {
        words: &["osd", "pool", "get-quota"],
        args: &[req("pool", Ty::Pool)],
        help: "obtain object or byte limits for pool",
    },
    Sig {
        words: &["osd", "pool", "set-quota"],
        args: &[
            req("pool", Ty::Pool),
            req("field", Ty::Choices(&["max_objects", "max_bytes"])),
            req("val", Ty::Str),
        ],
        help: "set object or byte limit on pool",
    },
    Sig {
        words: &["osd", "down"],
        args: &[req("ids", Ty::StrList), opt("definitely_dead", Ty::Bool)],
        help: "set osd(s) <id> [<id>...] down, or use <any|all> to set all osds down",
    },
    Sig {
        words: &["osd", "out"],
        args: &[req("ids", Ty::StrList)],
        help: "set osd(s) <id> [<id>...] out, or use <any|all> to set all osds out",
    },
    Sig {
        words: &["osd", "in"],
        args: &[req("ids", Ty::StrList)],
        help:
            "set osd(s) <id> [<id>...] in, can use <any|all> to automatically set all previously out osds in",
    },
    Sig {
        words: &["auth", "export"],
        args: &[opt("entity", Ty::Str)],
        help: "write keyring for requested entity, or master keyring if none given",
    },
    Sig { words: &["auth", "get"], args: &[req("entity", Ty::Str)], help: "write keyring file with requested key" },
    Sig { words: &["auth", "get-key"], args: &[req("entity", Ty::Str)], help: "display requested key" },
    Sig { words: &["auth", "print-key"], args: &[req("entity", Ty::Str)], help: "display requested key" },
    Sig { words: &["auth", "print_key"], args: &[req("entity", Ty::Str)], help: "display requested key" },
    Sig { words: &["auth", "list"], args: &[], help: "list authentication state" },
    Sig { words: &["auth", "ls"], args: &[], help: "list authentication state" },
    Sig {
        words: &["auth", "import"],
        args: &[],
        help: "auth import: read keyring file from -i <file>",
    },
    Sig {
        words: &["auth", "add"],
        args: &[req("entity", Ty::Str), opt("caps", Ty::StrList)],
        help: "add auth info for <entity> from input file, or random key if no input is given, and/or any caps specified in the command",
    },
    Sig {
        words: &["auth", "get-or-create-key"],
        args: &[req("entity", Ty::Str), opt("caps", Ty::StrList)],
        help: "get, or add, key for <name> from system/caps pairs specified in the command.  If key already exists, any given caps must match the existing caps for that key.",
    },
    Sig {
        words: &["auth", "get-or-create"],
        args: &[req("entity", Ty::Str), opt("caps", Ty::StrList)],
        help: "add auth info for <entity> from input file, or random key if no input given, and/or any caps specified in the command",
    },
    Sig {
        words: &["auth", "caps"],
        args: &[req("entity", Ty::Str), req("caps", Ty::StrList)],
        help: "update caps for <name> from caps specified in the command",
    },
    Sig { words: &["auth", "del"], args: &[req("entity", Ty::Str)], help: "delete all caps for <name>" },
    Sig { words: &["auth", "rm"], args: &[req("entity", Ty::Str)], help: "remove all caps for <name>" },
    Sig { words: &["pg", "stat"], args: &[], help: "show placement group status." },
    Sig {
        words: &["pg", "dump"],
        args: &[opt(
            "dumpcontents",
            Ty::Choices(&["all", "summary", "sum", "delta", "pools", "osds", "pgs", "pgs_brief"]),
        )],
        help: "show human-readable versions of pg map (only 'all' valid with plain)",
    },
];

impl ArgDesc {
    /// `ceph_argparse`'s `helpstr`: `<pool>`, `[<pg_num:int>]`, `--yes-i-really-mean-it`.
    fn helpstr(&self) -> String {
        let chunk = match self.ty {
            Ty::Bool => format!("--{}", self.name.replace('_', "-")),
            Ty::Choices(c) => format!("<{}:{}>", self.name, c.join("|")),
            Ty::Int => format!("<{}:int>", self.name),
            Ty::StrList => format!("<{}>...", self.name),
            Ty::Str | Ty::Pool => format!("<{}>", self.name),
        };
        if self.req {
            chunk
        } else {
            format!("[{chunk}]")
        }
    }

    /// `ceph_argparse`'s `argdesc.__str__`, used in "missing required parameter".
    fn describe(&self) -> String {
        let ty = match self.ty {
            Ty::Int => "<int[0-]>".to_string(),
            Ty::Pool => "<poolname>".to_string(),
            Ty::Choices(c) => c.join("|"),
            Ty::Str | Ty::StrList | Ty::Bool => "<string>".to_string(),
        };
        format!("{}({ty})", self.name)
    }
}

impl Sig {
    fn concise(&self) -> String {
        let words = self.words.iter().map(|w| w.to_string());
        words.chain(self.args.iter().map(ArgDesc::helpstr)).collect::<Vec<_>>().join(" ")
    }

    fn prefix(&self) -> String {
        self.words.join(" ")
    }

    /// How many of its literal words `words` starts with.
    fn literal_matches(&self, words: &[&str]) -> usize {
        self.words.iter().zip(words).take_while(|(a, b)| *a == *b).count()
    }

    fn invalid(&self, why: impl std::fmt::Display) -> Error {
        Error::einval(format!("Invalid command: {why}\n{} :  {}", self.concise(), self.help))
    }
}

/// The `help` listing: every command's signature and what it does.
pub fn help_text() -> String {
    let sigs: Vec<String> = COMMANDS.iter().map(Sig::concise).collect();
    let width = sigs.iter().map(String::len).max().unwrap_or(0);
    let lines = sigs.iter().zip(COMMANDS).map(|(s, c)| format!("{s:<width$}  {}\n", c.help));
    lines.collect()
}

/// Maps `ceph` words (global options already removed) to the JSON mon command.
pub fn argv_to_command(words: &[String]) -> Result<Value, Error> {
    let (words, format) = take_format(words)?;
    let mut cmd = if matches!(words.as_slice(), ["-s"] | ["--status"]) {
        let mut m = Map::new();
        m.insert("prefix".into(), Value::from("status"));
        m
    } else {
        let (sig, rest) = find_signature(&words)?;
        let mut m = parse_args(sig, rest)?;
        m.insert("prefix".into(), Value::from(sig.prefix()));
        m
    };
    if let Some(f) = format {
        cmd.insert("format".into(), Value::from(f));
    }
    Ok(Value::Object(cmd))
}

/// Removes `-f X`, `--format X`, `--format=X` and `-fX` wherever they appear.
fn take_format(words: &[String]) -> Result<(Vec<&str>, Option<&str>), Error> {
    let mut rest = Vec::new();
    let mut format = None;
    let mut it = words.iter().map(String::as_str);
    while let Some(w) = it.next() {
        let value = match w {
            "-f" | "--format" => {
                it.next().ok_or_else(|| Error::einval("argument -f/--format: expected one argument"))?
            }
            _ => match w.strip_prefix("--format=").or_else(|| w.strip_prefix("-f").filter(|v| !v.is_empty()))
            {
                Some(v) => v,
                None => {
                    rest.push(w);
                    continue;
                }
            },
        };
        if !FORMATS.contains(&value) {
            return Err(Error::einval(format!(
                "argument -f/--format: invalid choice: '{value}' (choose from 'json', 'json-pretty', 'xml', 'xml-pretty', 'plain', 'yaml')"
            )));
        }
        format = Some(value);
    }
    Ok((rest, format))
}

/// The command whose literal words start `words` (the longest such), and the words after them.
fn find_signature<'w>(words: &'w [&'w str]) -> Result<(&'static Sig, &'w [&'w str]), Error> {
    let full =
        COMMANDS.iter().filter(|s| s.literal_matches(words) == s.words.len()).max_by_key(|s| s.words.len());
    if let Some(sig) = full {
        return Ok((sig, &words[sig.words.len()..]));
    }
    let best = COMMANDS.iter().map(|s| s.literal_matches(words)).max().unwrap_or(0);
    let closest: Vec<String> = COMMANDS
        .iter()
        .filter(|s| s.literal_matches(words) == best)
        .take(MAX_CLOSEST)
        .map(Sig::concise)
        .collect();
    Err(Error::einval(format!(
        "no valid command found; {} closest matches:\n{}",
        closest.len(),
        closest.join("\n")
    )))
}

/// Checks one word against an argument's type; the JSON value to send.
fn validate(desc: &ArgDesc, word: &str) -> Result<Value, String> {
    match desc.ty {
        Ty::Int => parse_int(word).map(Value::from),
        Ty::Choices(c) if !c.contains(&word) => Err(format!("{word} not in {}", c.join("|"))),
        Ty::Bool => match word.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("{word} not one of 'true', 'false'")),
        },
        _ => Ok(Value::from(word)),
    }
}

/// Python's `int(s, 0)` for the non-negative range every Cairn integer argument has.
fn parse_int(word: &str) -> Result<i64, String> {
    let bad = || format!("{word} doesn't represent an int");
    let (neg, digits) = match word.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, word.strip_prefix('+').unwrap_or(word)),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).map_err(|_| bad())?,
        None if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse::<i64>().map_err(|_| bad())?,
        None => return Err(bad()),
    };
    let v = if neg { -magnitude } else { magnitude };
    if v < 0 {
        return Err(format!("{v} not in range [0]"));
    }
    Ok(v)
}

fn store(desc: &ArgDesc, word: &str, out: &mut Map<String, Value>) -> Result<(), String> {
    if desc.ty == Ty::StrList {
        let list = out.entry(desc.name).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(Value::from(word));
        }
        return Ok(());
    }
    out.insert(desc.name.into(), validate(desc, word)?);
    Ok(())
}

/// Splits `--name[=value]` keyword arguments from positional words.
fn take_kwargs<'w>(sig: &Sig, rest: &[&'w str], out: &mut Map<String, Value>) -> Result<Vec<&'w str>, Error> {
    let mut positional = Vec::new();
    let mut it = rest.iter().copied();
    while let Some(w) = it.next() {
        let Some(kw) = w.strip_prefix("--") else {
            positional.push(w);
            continue;
        };
        let (key, inline) = match kw.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (kw, None),
        };
        let name = key.replace('-', "_");
        let desc = sig.args.iter().find(|d| d.name == name);
        let Some(desc) = desc else {
            return Err(sig.invalid(format!("Unexpected argument '{w}'")));
        };
        let value = match (inline, desc.ty) {
            (Some(v), _) => v,
            (None, Ty::Bool) => "true",
            (None, _) => it.next().ok_or_else(|| sig.invalid(format!("missing value for {w}")))?,
        };
        store(desc, value, out).map_err(|e| sig.invalid(e))?;
    }
    Ok(positional)
}

/// Fills the signature's arguments from the words after its literal words.
fn parse_args(sig: &Sig, rest: &[&str]) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    let positional = take_kwargs(sig, rest, &mut out)?;
    let mut words = positional.into_iter().peekable();
    for desc in sig.args {
        if out.contains_key(desc.name) || desc.ty == Ty::Bool {
            continue;
        }
        let Some(&word) = words.peek() else {
            if desc.req {
                let why = format!("missing required parameter {}", desc.describe());
                return Err(sig.invalid(why));
            }
            continue;
        };
        if let Ty::Choices(c) = desc.ty {
            if !desc.req && !c.contains(&word) {
                continue; // an optional choice that is not given; the word is for a later argument
            }
        }
        if desc.ty == Ty::StrList {
            for w in words.by_ref() {
                store(desc, w, &mut out).map_err(|e| sig.invalid(e))?;
            }
            continue;
        }
        words.next();
        store(desc, word, &mut out).map_err(|e| sig.invalid(e))?;
    }
    let unused: Vec<String> = words.map(|w| format!("'{w}'")).collect();
    if !unused.is_empty() {
        return Err(sig.invalid(format!("unused arguments: [{}]", unused.join(", "))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmd(words: &[&str]) -> Result<Value, Error> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        argv_to_command(&words)
    }

    fn ok(words: &[&str]) -> Value {
        cmd(words).unwrap_or_else(|e| panic!("{words:?}: {e}"))
    }

    fn einval(words: &[&str]) -> String {
        let e = cmd(words).expect_err("should be refused");
        assert_eq!(e.errno, cairn_types::errno::EINVAL, "{words:?}");
        e.message
    }

    #[test]
    fn status_forms() {
        assert_eq!(ok(&["-s"]), json!({"prefix": "status"}));
        assert_eq!(ok(&["status"]), json!({"prefix": "status"}));
        assert_eq!(ok(&["-s", "-f", "json"]), json!({"prefix": "status", "format": "json"}));
    }

    #[test]
    fn format_anywhere() {
        let want = json!({"prefix": "df", "format": "json"});
        assert_eq!(ok(&["-f", "json", "df"]), want);
        assert_eq!(ok(&["df", "--format", "json"]), want);
        assert_eq!(ok(&["df", "--format=json"]), want);
        assert_eq!(ok(&["df", "-fjson"]), want);
        assert_eq!(ok(&["mon", "dump", "--format=json-pretty"])["format"], "json-pretty");
        assert!(einval(&["df", "-f", "toml"]).contains("invalid choice: 'toml'"));
        assert!(einval(&["df", "-f"]).contains("expected one argument"));
    }

    #[test]
    fn pool_create() {
        assert_eq!(
            ok(&["osd", "pool", "create", "volumes", "128"]),
            json!({"prefix": "osd pool create", "pool": "volumes", "pg_num": 128})
        );
        assert_eq!(
            ok(&["osd", "pool", "create", "volumes", "64", "64"]),
            json!({"prefix": "osd pool create", "pool": "volumes", "pg_num": 64, "pgp_num": 64})
        );
        let v = ok(&["osd", "pool", "create", "v", "64", "64", "replicated", "replicated_rule"]);
        assert_eq!(v["pool_type"], "replicated");
        assert_eq!(v["erasure_code_profile"], "replicated_rule");
        assert_eq!(ok(&["osd", "pool", "create", "v", "--size=2"])["size"], 2);
        assert_eq!(ok(&["osd", "pool", "create", "v", "--pg-num", "8"])["pg_num"], 8);
        assert_eq!(ok(&["osd", "pool", "create", "v", "0x10"])["pg_num"], 16);
    }

    #[test]
    fn pool_create_rejects_bad_numbers() {
        let msg = einval(&["osd", "pool", "create", "volumes", "abc"]);
        assert!(msg.starts_with("Invalid command: abc doesn't represent an int"), "{msg}");
        assert!(msg.contains("[<pg_num:int>]"), "{msg}");
        assert!(einval(&["osd", "pool", "create", "v", "-1"]).contains("-1 not in range [0]"));
        let msg = einval(&["osd", "pool", "create"]);
        assert!(msg.contains("missing required parameter pool(<poolname>)"), "{msg}");
    }

    #[test]
    fn pool_rm_and_delete() {
        let want = json!({"prefix": "osd pool rm", "pool": "x", "pool2": "x",
                          "yes_i_really_really_mean_it": true});
        assert_eq!(ok(&["osd", "pool", "rm", "x", "x", "--yes-i-really-really-mean-it"]), want);
        assert_eq!(ok(&["osd", "pool", "delete", "x"]), json!({"prefix": "osd pool delete", "pool": "x"}));
        assert!(einval(&["osd", "pool", "rm", "x", "x", "--bogus"]).contains("Unexpected argument '--bogus'"));
    }

    #[test]
    fn pool_set_get_and_quota() {
        assert_eq!(
            ok(&["osd", "pool", "set", "x", "size", "2"]),
            json!({"prefix": "osd pool set", "pool": "x", "var": "size", "val": "2"})
        );
        assert!(einval(&["osd", "pool", "set", "x", "colour", "2"]).contains("colour not in size|min_size"));
        assert_eq!(
            ok(&["osd", "pool", "get", "x", "size"]),
            json!({"prefix": "osd pool get", "pool": "x", "var": "size"})
        );
        assert_eq!(
            ok(&["osd", "pool", "set-quota", "x", "max_bytes", "10G"]),
            json!({"prefix": "osd pool set-quota", "pool": "x", "field": "max_bytes", "val": "10G"})
        );
        assert_eq!(
            ok(&["osd", "pool", "get-quota", "x"]),
            json!({"prefix": "osd pool get-quota", "pool": "x"})
        );
    }

    #[test]
    fn osd_marks() {
        assert_eq!(ok(&["osd", "down", "1"]), json!({"prefix": "osd down", "ids": ["1"]}));
        assert_eq!(ok(&["osd", "out", "osd.1", "2"]), json!({"prefix": "osd out", "ids": ["osd.1", "2"]}));
        assert_eq!(ok(&["osd", "in", "all"]), json!({"prefix": "osd in", "ids": ["all"]}));
        assert!(einval(&["osd", "down"]).contains("missing required parameter ids"));
    }

    #[test]
    fn reads() {
        assert_eq!(ok(&["health", "detail"]), json!({"prefix": "health", "detail": "detail"}));
        assert_eq!(ok(&["health"]), json!({"prefix": "health"}));
        assert_eq!(ok(&["df", "detail"]), json!({"prefix": "df", "detail": "detail"}));
        assert_eq!(
            ok(&["osd", "pool", "ls", "detail"]),
            json!({"prefix": "osd pool ls", "detail": "detail"})
        );
        assert_eq!(ok(&["pg", "dump"]), json!({"prefix": "pg dump"}));
        assert_eq!(ok(&["pg", "stat"]), json!({"prefix": "pg stat"}));
        assert_eq!(ok(&["mon", "dump"]), json!({"prefix": "mon dump"}));
        assert_eq!(ok(&["quorum_status"]), json!({"prefix": "quorum_status"}));
        assert_eq!(ok(&["mon_status"]), json!({"prefix": "mon_status"}));
        assert_eq!(ok(&["osd", "lspools"]), json!({"prefix": "osd lspools"}));
        assert_eq!(ok(&["osd", "tree"]), json!({"prefix": "osd tree"}));
        assert_eq!(ok(&["osd", "dump"]), json!({"prefix": "osd dump"}));
        assert_eq!(ok(&["osd", "stat"]), json!({"prefix": "osd stat"}));
        assert!(einval(&["health", "verbose"]).contains("unused arguments: ['verbose']"));
    }

    #[test]
    fn applications() {
        assert_eq!(
            ok(&["osd", "pool", "application", "enable", "images", "rbd"]),
            json!({"prefix": "osd pool application enable", "pool": "images", "app": "rbd"})
        );
        let v = ok(&["osd", "pool", "application", "enable", "i", "x", "--yes-i-really-mean-it"]);
        assert_eq!(v["yes_i_really_mean_it"], true);
        assert_eq!(
            ok(&["osd", "pool", "application", "get", "images"]),
            json!({"prefix": "osd pool application get", "pool": "images"})
        );
    }

    #[test]
    fn auth_commands_as_the_seeds_type_them() {
        let osd = "allow class-read object_prefix rbd_children, allow rwx pool=images";
        assert_eq!(
            ok(&["auth", "get-or-create", "client.glance", "mon", "allow r", "osd", osd]),
            json!({"prefix": "auth get-or-create", "entity": "client.glance",
                   "caps": ["mon", "allow r", "osd", osd]})
        );
        assert_eq!(
            ok(&["auth", "get-or-create", "client.glance"]),
            json!({"prefix": "auth get-or-create", "entity": "client.glance"})
        );
        assert_eq!(
            ok(&["auth", "caps", "client.nova", "mon", "allow r", "osd", "allow rwx pool=vm"])["caps"],
            json!(["mon", "allow r", "osd", "allow rwx pool=vm"])
        );
        assert_eq!(
            ok(&["auth", "get-key", "client.cinder"]),
            json!({"prefix": "auth get-key", "entity": "client.cinder"})
        );
        assert_eq!(ok(&["auth", "ls"]), json!({"prefix": "auth ls"}));
        assert_eq!(ok(&["auth", "export"]), json!({"prefix": "auth export"}));
        assert!(einval(&["auth", "caps", "client.x"]).contains("missing required parameter caps"));
    }

    #[test]
    fn unknown_words_list_closest_matches() {
        let msg = einval(&["osd", "pool", "frobnicate"]);
        assert!(msg.starts_with("no valid command found; 10 closest matches:\n"), "{msg}");
        assert!(msg.contains("osd pool create <pool> [<pg_num:int>]"), "{msg}");
        let msg = einval(&["frobnicate"]);
        assert!(msg.starts_with("no valid command found;"), "{msg}");
    }

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        assert_eq!(help.lines().count(), COMMANDS.len());
        assert!(help.contains("osd pool rm <pool> [<pool2>] [--yes-i-really-really-mean-it]"));
        assert!(help.contains("health [<detail:detail>]"));
    }
}

//! Global options every command takes, in Ceph's spelling.

use cairn_types::conf::{self, Conf};
use cairn_types::Error;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: cairn [-c CONF] [--id ID | --name TYPE.ID] COMMAND ...

Cluster:
  cairn up [--dir DIR] [--osds N] [--daemon] [--openstack]
                                                start (or restart) a local cluster (cephx on;
                                                --openstack: pools and users of the guides)
  cairn down [--dir DIR]                        stop it
  cairn mon --id ID [--data DIR]                run a monitor daemon
  cairn osd --id N [--data DIR]                 run an object storage daemon

Operator commands (as `ceph ...`):
  cairn -s | status | health [detail] | df [detail]
  cairn mon dump | quorum_status | mon_status
  cairn osd tree | dump | stat | lspools | down|out|in N...
  cairn osd pool create NAME [PG_NUM [PGP_NUM]] | ls [detail] | rm NAME NAME --yes-i-really-really-mean-it
  cairn osd pool set|get NAME KEY [VALUE] | get-quota|set-quota NAME ... | application enable NAME APP
  cairn pg stat | dump
  cairn daemon osd.N status | pg digests

Objects (as `rados ...`):
  cairn rados -p POOL put|get|rm|stat|ls|create|append|truncate|setxattr|getxattr|rmxattr|listxattr
  cairn rados -p POOL setomapval|getomapval|rmomapkey|listomapkeys|listomapvals ...
  cairn rados bench -p POOL SECONDS write|seq|rand [-b SIZE] [-t CONCURRENCY] [--no-cleanup]

Users and keys (as `ceph auth ...`; see docs/auth.md):
  cairn auth get-or-create ENTITY [SERVICE CAPS]... [-o FILE] | get-or-create-key | add
  cairn auth get ENTITY [-o FILE] | get-key | print-key | caps ENTITY SERVICE CAPS... | ls | rm
  cairn auth import -i FILE | export [ENTITY]

Options: -c/--conf FILE (else $CAIRN_CONF, ./cairn.conf, /etc/cairn/cairn.conf),
         --id ID / --name TYPE.ID (default client.admin), -k/--keyring FILE,
         -f/--format plain|json|json-pretty; $CEPH_ARGS and $CAIRN_ARGS hold more (e.g. \"--id volumes\")
";

/// Environment variables whose words are read as global options before the command line's
/// (Ceph's `CEPH_ARGS`; `CAIRN_ARGS` after it).
pub const ARGS_ENV: [&str; 2] = ["CEPH_ARGS", "CAIRN_ARGS"];

/// Options that apply to every command.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub conf_path: Option<PathBuf>,
    /// `client.admin` unless `--id`/`--name` say otherwise.
    pub name: String,
    /// The bare `--id` value, which names the daemon for `cairn mon`/`cairn osd`.
    pub id: Option<String>,
    /// `-k`/`--keyring`: overrides the conf's `keyring` for this command's entity.
    pub keyring: Option<String>,
}

impl Global {
    /// Loads the configuration file this command uses (with `--keyring` applied).
    pub fn conf(&self) -> Result<(PathBuf, Conf), Error> {
        let path = conf::locate(self.conf_path.as_deref())?;
        let mut conf = Conf::load(&path)?;
        if let Some(k) = &self.keyring {
            // The entity's own section is the most specific: it wins over [client] and [global].
            conf.set(&self.name, "keyring", k)?;
        }
        Ok((path, conf))
    }
}

/// Splits the global options from the command words (they may appear anywhere, as in Ceph);
/// the words of `$CEPH_ARGS` and `$CAIRN_ARGS` come first, so the command line overrides them.
pub fn split_global(argv: Vec<String>) -> Result<(Global, Vec<String>), Error> {
    let mut all: Vec<String> = Vec::new();
    for var in ARGS_ENV {
        if let Ok(v) = std::env::var(var) {
            all.extend(v.split_whitespace().map(str::to_string));
        }
    }
    all.extend(argv);
    split_words(all)
}

fn split_words(argv: Vec<String>) -> Result<(Global, Vec<String>), Error> {
    let mut g = Global { conf_path: None, name: "client.admin".into(), id: None, keyring: None };
    let mut words = Vec::new();
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        let mut value =
            |flag: &str| it.next().ok_or_else(|| Error::einval(format!("option {flag} needs a value")));
        match a.as_str() {
            "-c" | "--conf" => g.conf_path = Some(value(&a)?.into()),
            "--id" | "--user" => {
                let id = value(&a)?;
                g.name = format!("client.{id}");
                g.id = Some(id);
            }
            "-n" | "--name" => g.name = value(&a)?,
            "-k" | "--keyring" => g.keyring = Some(value(&a)?),
            "--cluster" => {
                value(&a)?;
            }
            _ => {
                if let Some(v) = a.strip_prefix("--conf=") {
                    g.conf_path = Some(v.into());
                } else if let Some(v) = a.strip_prefix("--keyring=") {
                    g.keyring = Some(v.to_string());
                } else if let Some(v) = a.strip_prefix("--id=") {
                    g.name = format!("client.{v}");
                    g.id = Some(v.to_string());
                } else if let Some(v) = a.strip_prefix("--name=") {
                    g.name = v.to_string();
                } else if let Some(v) = a.strip_prefix("--user=") {
                    g.name = format!("client.{v}");
                    g.id = Some(v.to_string());
                } else {
                    words.push(a);
                }
            }
        }
    }
    Ok((g, words))
}

/// Takes `--flag VALUE` / `--flag=VALUE` out of `words`.
pub fn take_opt(words: &mut Vec<String>, names: &[&str]) -> Result<Option<String>, Error> {
    let mut i = 0;
    while i < words.len() {
        let w = words[i].clone();
        for n in names {
            if w == *n {
                if i + 1 >= words.len() {
                    return Err(Error::einval(format!("option {n} needs a value")));
                }
                let v = words.remove(i + 1);
                words.remove(i);
                return Ok(Some(v));
            }
            if let Some(v) = w.strip_prefix(&format!("{n}=")) {
                words.remove(i);
                return Ok(Some(v.to_string()));
            }
        }
        i += 1;
    }
    Ok(None)
}

/// Takes a boolean `--flag` out of `words`.
pub fn take_flag(words: &mut Vec<String>, names: &[&str]) -> bool {
    let before = words.len();
    words.retain(|w| !names.contains(&w.as_str()));
    words.len() != before
}

/// Parses `4M`, `4096`, `1G`, `4K` (binary multiples, as Ceph's size options).
pub fn parse_size(s: &str) -> Result<u64, Error> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].to_ascii_uppercase();
            let m: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                _ => return Err(Error::einval(format!("invalid size '{s}'"))),
            };
            (&t[..i], m)
        }
        None => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| Error::einval(format!("invalid size '{s}'")))?;
    n.checked_mul(mult).ok_or_else(|| Error::einval(format!("size '{s}' is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(words: &[&str]) -> (Global, Vec<String>) {
        split_words(words.iter().map(|w| w.to_string()).collect()).unwrap()
    }

    #[test]
    fn identity_options() {
        let (g, w) = split(&["--id", "glance", "osd", "lspools"]);
        assert_eq!((g.name.as_str(), g.id.as_deref(), w.len()), ("client.glance", Some("glance"), 2));
        let (g, _) = split(&["--name=client.cinder", "-k", "/etc/ceph/x.keyring", "-s"]);
        assert_eq!((g.name.as_str(), g.keyring.as_deref()), ("client.cinder", Some("/etc/ceph/x.keyring")));
        let (g, _) = split(&["--keyring=/k", "--user=nova"]);
        assert_eq!((g.name.as_str(), g.keyring.as_deref()), ("client.nova", Some("/k")));
        // Later words win, so the command line overrides CEPH_ARGS (which comes first).
        let (g, _) = split(&["--id", "volumes", "--id", "admin"]);
        assert_eq!(g.name, "client.admin");
        assert!(split_words(vec!["--keyring".into()]).is_err());
    }
}

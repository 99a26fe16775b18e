//! `auth …` commands (Ceph's `AuthMonitor`): `get-or-create`, `get-or-create-key`, `add`,
//! `get`, `get-key`, `print-key`, `caps`, `ls`, `rm`, `import`, `export`. Reads are answered from
//! the applied auth database; changes become [`AuthCommand`]s, with new keys drawn here on the
//! leader (the state machine stays deterministic). Caps are checked with `cairn-auth`'s parsers
//! before anything is stored: a bad cap string is EINVAL with its byte offset and the reason.

use super::args::Args;
use super::format::{json_bytes, Format};
use super::{CommandOutput, Plan};
use cairn_auth::{caps, CryptoKey, EntityName, Keyring, KeyringEntry, Secret};
use cairn_types::auth::{AuthCommand, AuthDb, AuthEntity, AuthKey, AuthSecret};
use cairn_types::{Error, MapCommand, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most entities one `auth import` may carry.
const MAX_IMPORT_ENTITIES: usize = 4096;

/// Whether `prefix` is an `auth` command that only reads.
pub fn is_read_only(prefix: &str) -> bool {
    matches!(
        prefix,
        "auth get"
            | "auth get-key"
            | "auth print-key"
            | "auth print_key"
            | "auth ls"
            | "auth list"
            | "auth export"
    )
}

/// Plans an `auth` command against the applied database (`inbuf`: `auth import -i FILE`).
pub fn plan(cmd: &Value, db: &AuthDb, inbuf: &[u8]) -> Result<Plan> {
    let args = Args::new(cmd)?;
    let prefix = args.prefix()?;
    if !db.is_initialized() {
        return Err(Error::eagain("the auth database is not initialized yet"));
    }
    let format = args.format();
    match prefix {
        "auth get-or-create" | "auth get-or-create-key" => {
            let (name, caps) = (entity_arg(&args)?, caps_arg(&args)?);
            match db.get(&name.to_string()) {
                Some(have) => {
                    check_caps_match(&name, have, &caps)?;
                    Ok(Plan::Reply(entity_output(prefix, &name, have, format)))
                }
                None => Ok(propose(AuthCommand::GetOrCreate {
                    entity: name.to_string(),
                    entity_value: fresh(caps),
                })),
            }
        }
        "auth add" => {
            let (name, caps) = (entity_arg(&args)?, caps_arg(&args)?);
            let key = match imported(inbuf)?.and_then(|k| k.entries.get(&name).cloned()) {
                Some(e) => e.key,
                None => CryptoKey::generate(),
            };
            let value = AuthEntity { key: auth_key(&key), caps };
            Ok(propose(AuthCommand::Add { entity: name.to_string(), entity_value: value }))
        }
        "auth get" | "auth export" if prefix == "auth get" || args.opt_str("entity")?.is_some() => {
            let name = entity_arg(&args)?;
            let e = lookup(db, &name)?;
            Ok(Plan::Reply(CommandOutput {
                status: format!("exported keyring for {name}"),
                data: keyring_output([(&name, e)], format),
            }))
        }
        "auth export" => {
            let all = sorted(db);
            let data = keyring_output(all.iter().map(|(n, e)| (n, *e)), format);
            Ok(Plan::Reply(CommandOutput { status: "exported master keyring".into(), data }))
        }
        "auth get-key" | "auth print-key" | "auth print_key" => {
            let name = entity_arg(&args)?;
            let e = lookup(db, &name)?;
            Ok(Plan::Reply(CommandOutput { status: String::new(), data: key_output(e, format) }))
        }
        "auth caps" => {
            let name = entity_arg(&args)?;
            let caps = caps_arg(&args)?;
            lookup(db, &name)?;
            Ok(propose(AuthCommand::SetCaps { entity: name.to_string(), caps }))
        }
        "auth ls" | "auth list" => {
            let all = sorted(db);
            Ok(Plan::Reply(CommandOutput {
                status: "installed auth entries:".into(),
                data: ls_output(&all, format),
            }))
        }
        "auth rm" | "auth del" => {
            let name = entity_arg(&args)?;
            lookup(db, &name)?;
            Ok(propose(AuthCommand::Remove { entity: name.to_string() }))
        }
        "auth import" => {
            let keyring =
                imported(inbuf)?.ok_or_else(|| Error::einval("auth import: no keyring given (-i FILE)"))?;
            if keyring.entries.len() > MAX_IMPORT_ENTITIES {
                return Err(Error::einval(format!("auth import: more than {MAX_IMPORT_ENTITIES} entities")));
            }
            let mut entities = Vec::new();
            for (name, e) in &keyring.entries {
                for (service, cap) in &e.caps {
                    validate_cap(service, cap)?;
                }
                entities.push((name.to_string(), AuthEntity { key: auth_key(&e.key), caps: e.caps.clone() }));
            }
            Ok(propose(AuthCommand::Import { entities }))
        }
        other => Err(Error::einval(format!("unrecognized command '{other}'"))),
    }
}

/// The answer once a proposed `auth` command was applied, read from the database after it.
pub fn applied_output(cmd: &Value, applied: &AuthCommand, status: &str, db: &AuthDb) -> CommandOutput {
    let args = Args::new(cmd).ok();
    let format = args.as_ref().map_or(Format::Plain, |a| a.format());
    let prefix = args.as_ref().and_then(|a| a.prefix().ok()).unwrap_or("");
    match applied {
        AuthCommand::GetOrCreate { entity, .. } => match (entity.parse::<EntityName>(), db.get(entity)) {
            (Ok(name), Some(e)) => entity_output(prefix, &name, e, format),
            _ => CommandOutput::default(),
        },
        _ => CommandOutput { status: status.to_string(), data: Vec::new() },
    }
}

fn propose(cmd: AuthCommand) -> Plan {
    Plan::Propose(MapCommand::Auth(cmd))
}

fn entity_arg(args: &Args) -> Result<EntityName> {
    args.str("entity")?.parse()
}

/// `caps` as Ceph sends them: `["mon", "allow r", "osd", "allow rwx pool=images"]`, each checked.
fn caps_arg(args: &Args) -> Result<BTreeMap<String, String>> {
    if !args.has("caps") {
        return Ok(BTreeMap::new());
    }
    let list = args.str_list("caps")?;
    if list.len() % 2 != 0 {
        return Err(Error::einval(format!(
            "caps must come in pairs of service and cap string; '{}' has none",
            list.last().map(String::as_str).unwrap_or("")
        )));
    }
    let mut caps = BTreeMap::new();
    for pair in list.chunks(2) {
        validate_cap(&pair[0], &pair[1])?;
        caps.insert(pair[0].clone(), pair[1].clone());
    }
    Ok(caps)
}

fn validate_cap(service: &str, cap: &str) -> Result<()> {
    if !matches!(service, "mon" | "osd" | "mgr" | "mds") {
        return Err(Error::einval(format!(
            "unknown cap service '{service}' (expected mon, osd, mgr or mds)"
        )));
    }
    caps::validate(service, cap)
}

fn check_caps_match(name: &EntityName, have: &AuthEntity, want: &BTreeMap<String, String>) -> Result<()> {
    for (service, cap) in want {
        if have.caps.get(service) != Some(cap) {
            return Err(Error::einval(format!("key for {name} exists but cap {service} does not match")));
        }
    }
    Ok(())
}

fn lookup<'a>(db: &'a AuthDb, name: &EntityName) -> Result<&'a AuthEntity> {
    db.get(&name.to_string()).ok_or_else(|| Error::enoent(format!("failed to find {name} in keyring")))
}

fn imported(inbuf: &[u8]) -> Result<Option<Keyring>> {
    if inbuf.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(inbuf).map_err(|_| Error::einval("keyring is not UTF-8 text"))?;
    Keyring::parse(text).map(Some)
}

fn fresh(caps: BTreeMap<String, String>) -> AuthEntity {
    AuthEntity { key: auth_key(&CryptoKey::generate()), caps }
}

pub(crate) fn auth_key(k: &CryptoKey) -> AuthKey {
    AuthKey { created: k.created, secret: AuthSecret(*k.secret.expose()) }
}

pub(crate) fn crypto_key(k: &AuthKey) -> CryptoKey {
    CryptoKey { created: k.created, secret: Secret::from_bytes(k.secret.0) }
}

/// Entities in Ceph's order (mon, osd, client, mgr; then by id), skipping unparsable names.
fn sorted(db: &AuthDb) -> Vec<(EntityName, &AuthEntity)> {
    let mut all: Vec<(EntityName, &AuthEntity)> =
        db.entities.iter().filter_map(|(n, e)| n.parse().ok().map(|n| (n, e))).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn entity_json(name: &EntityName, e: &AuthEntity) -> Value {
    json!({"entity": name.to_string(), "key": crypto_key(&e.key).to_base64(), "caps": e.caps})
}

fn keyring_output<'a>(
    entities: impl IntoIterator<Item = (&'a EntityName, &'a AuthEntity)>,
    f: Format,
) -> Vec<u8> {
    let entities: Vec<_> = entities.into_iter().collect();
    if f.is_json() {
        let list: Vec<Value> = entities.iter().map(|(n, e)| entity_json(n, e)).collect();
        return json_bytes(&Value::Array(list), f);
    }
    let mut keyring = Keyring::default();
    for (n, e) in entities {
        keyring.entries.insert(n.clone(), KeyringEntry { key: crypto_key(&e.key), caps: e.caps.clone() });
    }
    keyring.to_text().into_bytes()
}

fn key_output(e: &AuthEntity, f: Format) -> Vec<u8> {
    let key = crypto_key(&e.key).to_base64();
    if f.is_json() {
        return json_bytes(&json!({"key": key}), f);
    }
    key.into_bytes()
}

fn entity_output(prefix: &str, name: &EntityName, e: &AuthEntity, f: Format) -> CommandOutput {
    let data =
        if prefix == "auth get-or-create-key" { key_output(e, f) } else { keyring_output([(name, e)], f) };
    CommandOutput { status: String::new(), data }
}

fn ls_output(all: &[(EntityName, &AuthEntity)], f: Format) -> Vec<u8> {
    if f.is_json() {
        let list: Vec<Value> = all.iter().map(|(n, e)| entity_json(n, e)).collect();
        return json_bytes(&json!({"auth_dump": list}), f);
    }
    let mut out = String::new();
    for (n, e) in all {
        out += &format!("{n}\n\tkey: {}\n", crypto_key(&e.key).to_base64());
        for (service, cap) in &e.caps {
            out += &format!("\tcaps: [{service}] {cap}\n");
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_types::errno;

    fn db() -> AuthDb {
        let mut db = AuthDb::default();
        let admin = fresh([("mon".to_string(), "allow *".to_string())].into());
        db.apply(&AuthCommand::Init {
            entities: vec![("client.admin".into(), admin)],
            service_keys: vec![("osd".into(), AuthSecret([1; 16]))],
            now_secs: 1,
        })
        .unwrap();
        db
    }

    fn run(db: &mut AuthDb, cmd: Value) -> Result<CommandOutput> {
        match plan(&cmd, db, b"")? {
            Plan::Reply(out) => Ok(out),
            Plan::Propose(MapCommand::Auth(a)) => {
                let status = db.apply(&a)?;
                Ok(applied_output(&cmd, &a, &status, db))
            }
            Plan::Propose(other) => panic!("unexpected {other:?}"),
        }
    }

    const GLANCE_OSD: &str = "allow class-read object_prefix rbd_children, allow rwx pool=images";

    #[test]
    fn get_or_create_prints_the_keyring_and_is_idempotent() {
        let mut db = db();
        let cmd = json!({"prefix": "auth get-or-create", "entity": "client.glance",
                         "caps": ["mon", "allow r", "osd", GLANCE_OSD]});
        let out = String::from_utf8(run(&mut db, cmd.clone()).unwrap().data).unwrap();
        assert!(out.starts_with("[client.glance]\n\tkey = AQ"), "{out}");
        assert!(
            out.ends_with(&format!("\tcaps mon = \"allow r\"\n\tcaps osd = \"{GLANCE_OSD}\"\n")),
            "{out}"
        );
        let again = String::from_utf8(run(&mut db, cmd).unwrap().data).unwrap();
        assert_eq!(again, out);
        // Without caps: the existing keyring.
        let bare = json!({"prefix": "auth get-or-create", "entity": "client.glance"});
        assert_eq!(String::from_utf8(run(&mut db, bare).unwrap().data).unwrap(), out);
        let other =
            json!({"prefix": "auth get-or-create", "entity": "client.glance", "caps": ["mon", "allow *"]});
        let e = run(&mut db, other).unwrap_err();
        assert_eq!(e.message, "key for client.glance exists but cap mon does not match");
        let key = run(&mut db, json!({"prefix": "auth get-key", "entity": "client.glance"})).unwrap();
        assert!(out.contains(std::str::from_utf8(&key.data).unwrap()));
    }

    #[test]
    fn bad_caps_are_refused_with_position() {
        let mut db = db();
        let cmd = json!({"prefix": "auth get-or-create", "entity": "client.x", "caps": ["osd", "allow rwx pool=images, alow r"]});
        let e = run(&mut db, cmd).unwrap_err();
        assert_eq!(e.errno, errno::EINVAL);
        assert!(e.message.contains("bad osd cap at"), "{}", e.message);
        let odd = json!({"prefix": "auth caps", "entity": "client.admin", "caps": ["osd"]});
        assert!(run(&mut db, odd).unwrap_err().message.contains("pairs"));
        let svc = json!({"prefix": "auth caps", "entity": "client.admin", "caps": ["disk", "allow"]});
        assert!(run(&mut db, svc).unwrap_err().message.contains("unknown cap service 'disk'"));
        assert!(db.get("client.x").is_none());
    }

    #[test]
    fn caps_get_ls_rm_import() {
        let mut db = db();
        run(&mut db, json!({"prefix": "auth get-or-create", "entity": "client.g"})).unwrap();
        let caps = json!({"prefix": "auth caps", "entity": "client.g", "caps": ["mon", "allow r", "osd", "allow rwx pool=images"]});
        assert_eq!(run(&mut db, caps).unwrap().status, "updated caps for client.g");
        let got = run(&mut db, json!({"prefix": "auth get", "entity": "client.g"})).unwrap();
        assert_eq!(got.status, "exported keyring for client.g");
        let text = String::from_utf8(got.data).unwrap();
        assert!(text.contains("caps osd = \"allow rwx pool=images\""), "{text}");
        let ls = String::from_utf8(run(&mut db, json!({"prefix": "auth ls"})).unwrap().data).unwrap();
        assert!(
            ls.contains("client.g\n\tkey: AQ") && ls.contains("\tcaps: [osd] allow rwx pool=images\n"),
            "{ls}"
        );
        let j = run(&mut db, json!({"prefix": "auth ls", "format": "json"})).unwrap();
        let v: Value = serde_json::from_slice(&j.data).unwrap();
        assert_eq!(v["auth_dump"].as_array().unwrap().len(), 2);
        run(&mut db, json!({"prefix": "auth rm", "entity": "client.g"})).unwrap();
        let e = run(&mut db, json!({"prefix": "auth get", "entity": "client.g"})).unwrap_err();
        assert_eq!((e.errno, e.message.as_str()), (errno::ENOENT, "failed to find client.g in keyring"));
        // Import it back from its keyring text.
        let imp = json!({"prefix": "auth import"});
        let Plan::Propose(MapCommand::Auth(a)) = plan(&imp, &db, text.as_bytes()).unwrap() else { panic!() };
        db.apply(&a).unwrap();
        let back = run(&mut db, json!({"prefix": "auth get", "entity": "client.g"})).unwrap();
        assert_eq!(String::from_utf8(back.data).unwrap(), text);
        assert!(plan(&imp, &db, b"").unwrap_err().message.contains("-i FILE"));
    }
}

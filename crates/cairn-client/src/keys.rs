//! Finding a client's key the way Ceph does: `key =` (the key itself), `keyfile =` (a file
//! holding only the key, as `auth get-key` prints it), else `keyring =` — a list of files of
//! which the first that exists is used — else the default keyring search path. The conf section
//! lookup (`[client.glance]` → `[client]` → `[global]`) and `$cluster` / `$name` expansion are
//! the conf's.

use cairn_auth::{CryptoKey, EntityName, Keyring, Secret};
use cairn_proto::auth::{is_daemon, AuthMethod, AuthSettings, ModeSettings};
use cairn_types::conf::Conf;
use cairn_types::{errno, Error, Result};
use std::io::Read;
use std::path::Path;

/// Ceph's default `keyring` search path, for Cairn's `/etc/cairn` first and Ceph's `/etc/ceph`
/// after it (`$cluster` is the conf file's base name: `cairn.conf` → `cairn`).
pub const DEFAULT_KEYRING_PATH: &str = "/etc/cairn/$cluster.$name.keyring,/etc/cairn/$cluster.keyring,\
/etc/cairn/keyring,/etc/cairn/keyring.bin,/etc/ceph/$cluster.$name.keyring,/etc/ceph/$cluster.keyring,\
/etc/ceph/keyring,/etc/ceph/keyring.bin";
/// Largest `keyfile` read (a key is 40 characters).
const MAX_KEYFILE_BYTES: u64 = 4096;

/// Who a client (or daemon) is to the cluster: its entity, its key, and the methods it uses.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub entity: EntityName,
    pub secret: Option<Secret>,
    /// In order of preference.
    pub methods: Vec<AuthMethod>,
    /// The on-wire modes it asks for (`ms_client_mode`, …).
    pub modes: ModeSettings,
}

impl Credentials {
    /// Method none, claiming to be `entity`.
    pub fn none(entity: EntityName) -> Self {
        Credentials { entity, secret: None, methods: vec![AuthMethod::None], modes: ModeSettings::default() }
    }

    /// cephx with `secret`.
    pub fn cephx(entity: EntityName, secret: Secret) -> Self {
        Credentials {
            entity,
            secret: Some(secret),
            methods: vec![AuthMethod::Cephx],
            modes: ModeSettings::default(),
        }
    }

    /// From the configuration: the methods of `auth_client_required` (daemons:
    /// `auth_cluster_required`) and, when cephx is among them, the entity's key, and the
    /// `ms_*_mode` options. Without a key, cephx-only is an error naming where it looked; with
    /// `none` also allowed, none is used.
    pub fn from_conf(conf: &Conf, entity: &str) -> Result<Credentials> {
        let name: EntityName = entity.parse()?;
        let settings = AuthSettings::from_conf(conf, entity)?;
        let modes = settings.modes;
        let methods = if is_daemon(&name) { settings.cluster } else { settings.client };
        if !methods.contains(&AuthMethod::Cephx) {
            return Ok(Credentials { entity: name, secret: None, methods, modes });
        }
        match find_secret(conf, &name) {
            Ok(secret) => Ok(Credentials { entity: name, secret: Some(secret), methods, modes }),
            Err(_) if methods.contains(&AuthMethod::None) => {
                Ok(Credentials { modes, ..Credentials::none(name) })
            }
            Err(e) => Err(e),
        }
    }
}

/// The entity's secret from `key`, `keyfile` or the keyring files.
pub fn find_secret(conf: &Conf, name: &EntityName) -> Result<Secret> {
    let entity = name.to_string();
    if let Some(text) = conf.get(&entity, "key").filter(|k| !k.trim().is_empty()) {
        let key = CryptoKey::from_base64(&text)
            .map_err(|e| Error::einval(format!("config option 'key' for {entity}: {}", e.message)))?;
        return Ok(key.secret);
    }
    if let Some(path) = conf.get(&entity, "keyfile").filter(|p| !p.trim().is_empty()) {
        return read_keyfile(Path::new(path.trim()));
    }
    let (list, configured) = match conf.get(&entity, "keyring").filter(|k| !k.trim().is_empty()) {
        Some(list) => (list, true),
        None => (DEFAULT_KEYRING_PATH.replace("$cluster", conf.cluster()).replace("$name", &entity), false),
    };
    let paths: Vec<&str> = list.split([',', ';', ' ', '\t']).filter(|p| !p.is_empty()).collect();
    let Some(path) = paths.iter().map(Path::new).find(|p| p.is_file()) else {
        let how = if configured { "keyring" } else { "the default keyring search path" };
        return Err(Error::new(
            errno::ENOENT,
            format!(
                "no keyring found for {entity} (looked in {}, from {how}); pass --keyring FILE or set \
                 'keyring', 'key' or 'keyfile' in the configuration",
                paths.join(", ")
            ),
        ));
    };
    let keyring = Keyring::load(path)?;
    match keyring.get(name) {
        Some(e) => Ok(e.key.secret.clone()),
        None => Err(Error::new(errno::ENOENT, format!("keyring {} has no key for {entity}", path.display()))),
    }
}

fn read_keyfile(path: &Path) -> Result<Secret> {
    let err = |e: std::io::Error| {
        Error::new(Error::from(e).errno, format!("keyfile {}: cannot read", path.display()))
    };
    let mut text = String::new();
    std::fs::File::open(path).map_err(err)?.take(MAX_KEYFILE_BYTES).read_to_string(&mut text).map_err(err)?;
    let key = CryptoKey::from_base64(text.trim())
        .map_err(|e| Error::einval(format!("keyfile {}: {}", path.display(), e.message)))?;
    Ok(key.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Conf {
        Conf::parse(text).unwrap()
    }

    #[test]
    fn key_keyfile_and_keyring_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = CryptoKey::generate();
        let k2 = CryptoKey::generate();
        let glance: EntityName = "client.glance".parse().unwrap();
        let keyfile = dir.path().join("client.glance.key");
        std::fs::write(&keyfile, format!("{}\n", k1.to_base64())).unwrap();
        let mut kr = Keyring::default();
        kr.entries.insert(glance.clone(), cairn_auth::KeyringEntry::new(k2.clone()));
        let krpath = dir.path().join("cairn.client.glance.keyring");
        kr.save(&krpath).unwrap();

        let c = conf(&format!("[client]\nkeyring = {}/cairn.$name.keyring\n", dir.path().display()));
        assert_eq!(find_secret(&c, &glance).unwrap(), k2.secret);
        let c = conf(&format!("[client.glance]\nkeyfile = {}\n", keyfile.display()));
        assert_eq!(find_secret(&c, &glance).unwrap(), k1.secret);
        let c = conf(&format!("[client.glance]\nkey = {}\nkeyfile = /nonexistent\n", k2.to_base64()));
        assert_eq!(find_secret(&c, &glance).unwrap(), k2.secret);
        // The first existing file of the list is the one used.
        let c = conf(&format!("[global]\nkeyring = /nonexistent/a, {}\n", krpath.display()));
        assert_eq!(find_secret(&c, &glance).unwrap(), k2.secret);
    }

    #[test]
    fn missing_keys_are_clear_errors() {
        let cinder: EntityName = "client.cinder".parse().unwrap();
        let c = conf("[global]\nkeyring = /nonexistent/k\n");
        let e = find_secret(&c, &cinder).unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
        assert!(e.message.contains("no keyring found for client.cinder") && e.message.contains("--keyring"));
        let e = Credentials::from_conf(&c, "client.cinder").unwrap_err();
        assert_eq!(e.errno, errno::ENOENT);
        let c = conf("[global]\nkeyring = /nonexistent/k\nauth client required = cephx, none\n");
        assert_eq!(Credentials::from_conf(&c, "client.cinder").unwrap().methods, vec![AuthMethod::None]);
        let c = conf("[client]\nkey = AAAA\n");
        assert_eq!(find_secret(&c, &cinder).unwrap_err().errno, errno::EINVAL);
    }
}

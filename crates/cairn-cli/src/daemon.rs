//! `cairn mon` and `cairn osd`: the daemons, configured from the conf file as Ceph's are.

use crate::args::{take_opt, Global};
use cairn_auth::{EntityName, Keyring};
use cairn_mon::auth::MonAuthConfig;
use cairn_mon::raft::{MonRaft, RaftTiming};
use cairn_mon::service::{Mon, MonConfig, TcpRaftTransport};
use cairn_osd::{OsdAuthConfig, OsdConfig};
use cairn_proto::{AuthSettings, ClientAuth};
use cairn_store::datadir::DataDir;
use cairn_store::RedbStore;
use cairn_types::conf::{parse_mon_hosts, Conf};
use cairn_types::placement::FailureDomain;
use cairn_types::{Error, MapSettings, MonInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The monitors named by the configuration, in rank order: (name, address).
pub fn mon_members(conf: &Conf, entity: &str) -> Result<Vec<(String, String)>, Error> {
    let hosts =
        conf.get(entity, "mon host").ok_or_else(|| Error::einval("the configuration has no 'mon host'"))?;
    let addrs = parse_mon_hosts(&hosts)?;
    let names: Vec<String> = match conf.get(entity, "mon initial members") {
        Some(v) => v.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        None => (0..addrs.len()).map(|i| ((b'a' + i as u8) as char).to_string()).collect(),
    };
    if names.len() != addrs.len() {
        return Err(Error::einval(format!(
            "'mon initial members' names {} mons but 'mon host' has {} addresses",
            names.len(),
            addrs.len()
        )));
    }
    Ok(names.into_iter().zip(addrs).collect())
}

fn daemon_id(global: &Global, words: &mut Vec<String>, kind: &str) -> Result<String, Error> {
    if let Some(id) = take_opt(words, &["-i"])? {
        return Ok(id);
    }
    global.id.clone().ok_or_else(|| Error::einval(format!("cairn {kind} needs --id")))
}

fn get_u64(conf: &Conf, entity: &str, key: &str, default: u64) -> Result<u64, Error> {
    match conf.get(entity, key) {
        Some(v) => v.trim().parse().map_err(|_| Error::einval(format!("{key}: '{v}' is not a number"))),
        None => Ok(default),
    }
}

fn map_settings(conf: &Conf, entity: &str) -> Result<MapSettings, Error> {
    let d = MapSettings::default();
    Ok(MapSettings {
        default_failure_domain: match get_u64(conf, entity, "osd crush chooseleaf type", 1)? {
            0 => FailureDomain::Osd,
            _ => FailureDomain::Host,
        },
        default_size: get_u64(conf, entity, "osd pool default size", d.default_size as u64)? as u32,
        default_min_size: match get_u64(conf, entity, "osd pool default min size", 0)? {
            0 => d.default_min_size,
            n => n as u32,
        },
        default_pg_num: get_u64(conf, entity, "osd pool default pg num", d.default_pg_num as u64)? as u32,
        down_out_interval_secs: get_u64(conf, entity, "mon osd down out interval", d.down_out_interval_secs)?,
        allow_pool_delete: true,
    })
}

/// Sets up logging to `log file` (or stderr) and writes `pid file`.
fn init_process(conf: &Conf, entity: &str) -> Result<Option<PathBuf>, Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into());
    match conf.get(entity, "log file") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        _ => tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init(),
    }
    let pid_file = conf.get(entity, "pid file").filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(p) = &pid_file {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(p, format!("{}\n", std::process::id()))?;
    }
    Ok(pid_file)
}

fn data_dir(words: &mut Vec<String>, conf: &Conf, entity: &str, key: &str) -> Result<PathBuf, Error> {
    if let Some(d) = take_opt(words, &["--data", "-d"])? {
        return Ok(d.into());
    }
    conf.get(entity, key)
        .map(PathBuf::from)
        .ok_or_else(|| Error::einval(format!("no data directory: pass --data or set '{key}' in [{entity}]")))
}

/// A daemon's `keyring` defaults to `keyring` in its data directory, as Ceph's does.
fn default_keyring(conf: &mut Conf, entity: &str, dir: &Path) -> Result<(), Error> {
    if conf.get(entity, "keyring").is_none_or(|k| k.trim().is_empty()) {
        conf.set(entity, "keyring", &dir.join("keyring").display().to_string())?;
    }
    Ok(())
}

/// The mon keyring: `mon.` (shared by every mon) and the entities that seed a new cluster's
/// auth database. Required with cephx.
fn mon_keyring(conf: &Conf, entity: &str, settings: &AuthSettings) -> Result<Keyring, Error> {
    let path = conf.get(entity, "keyring").unwrap_or_default();
    let path = path.split([',', ';']).map(str::trim).find(|p| Path::new(p).is_file());
    let keyring = match path {
        Some(p) => Keyring::load(Path::new(p))?,
        None if !settings.uses_cephx() => Keyring::default(),
        None => {
            return Err(Error::enoent(format!(
                "{entity}: no keyring (set 'keyring' or put one in the data directory): a monitor needs                  the 'mon.' key, which `cairn up` writes"
            )))
        }
    };
    let mon: EntityName = "mon.".parse()?;
    if settings.uses_cephx() && keyring.get(&mon).is_none() {
        return Err(Error::einval(format!("{entity}: the mon keyring has no 'mon.' key")));
    }
    Ok(keyring)
}

fn fsid(conf: &Conf, entity: &str) -> Result<String, Error> {
    conf.get(entity, "fsid").ok_or_else(|| Error::einval("the configuration has no 'fsid'"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
}

pub fn run_mon(global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let id = daemon_id(global, &mut words, "mon")?;
    let entity = format!("mon.{id}");
    let (_, mut conf) = global.conf()?;
    let fsid = fsid(&conf, &entity)?;
    let members = mon_members(&conf, &entity)?;
    let rank = members.iter().position(|(name, _)| *name == id).ok_or_else(|| {
        Error::enoent(format!("mon.{id} is not among the configured monitors ('mon initial members')"))
    })?;
    let dir = data_dir(&mut words, &conf, &entity, "mon data")?;
    default_keyring(&mut conf, &entity, &dir)?;
    let settings = AuthSettings::from_conf(&conf, &entity)?;
    let keyring = mon_keyring(&conf, &entity, &settings)?;
    let mon_secret = keyring.get(&"mon.".parse()?).map(|e| e.key.secret.clone());
    let datadir = DataDir::open(&dir, &fsid, &entity)?;
    let pid_file = init_process(&conf, &entity)?;
    let mons: Vec<MonInfo> = members
        .iter()
        .enumerate()
        .map(|(i, (name, addr))| MonInfo { node_id: i as u64 + 1, name: name.clone(), addr: addr.clone() })
        .collect();
    let cfg = MonConfig {
        node_id: rank as u64 + 1,
        fsid,
        mons: mons.clone(),
        settings: map_settings(&conf, &entity)?,
        min_down_reporters: get_u64(&conf, &entity, "mon osd min down reporters", 2)? as usize,
        osd_report_timeout: Duration::from_secs(get_u64(&conf, &entity, "mon osd report timeout", 900)?),
        auth: MonAuthConfig { settings: settings.clone(), keyring },
    };
    let timing = RaftTiming {
        heartbeat_ms: get_u64(&conf, &entity, "mon raft heartbeat ms", 250)?,
        election_timeout_min_ms: get_u64(&conf, &entity, "mon raft election timeout min ms", 1000)?,
        election_timeout_max_ms: get_u64(&conf, &entity, "mon raft election timeout max ms", 2000)?,
    };
    let rt = crate::output::runtime()?;
    rt.block_on(async move {
        let addr = &members[rank].1;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("mon.{id}: cannot listen on {addr}: {e}"),
            )
        })?;
        let peers: BTreeMap<u64, String> = mons.iter().map(|m| (m.node_id, m.addr.clone())).collect();
        // Mons reach each other as `mon.`, with the key they share.
        let net = cairn_proto::net::tcp();
        let addrs: Vec<String> = peers.values().cloned().collect();
        let (methods, modes) = (settings.cluster.clone(), settings.modes.clone());
        let auth = ClientAuth::with_modes("mon.".parse()?, mon_secret, methods, modes, addrs, net.clone());
        let transport = TcpRaftTransport::with_network(net, auth);
        let raft = MonRaft::open(cfg.node_id, &datadir.path, peers, transport, timing).await?;
        let mon = Mon::new(cfg, raft.clone());
        tokio::spawn(cairn_proto::rpc::serve(listener, mon.clone(), mon.clone()));
        raft.bootstrap_if_fresh().await?;
        tokio::spawn(mon.clone().tick());
        tracing::info!(mon = %id, %addr, "monitor started");
        wait_for_signal().await;
        raft.shutdown().await;
        Ok::<_, Error>(())
    })?;
    remove_pid(pid_file.as_deref());
    Ok(ExitCode::SUCCESS)
}

fn remove_pid(p: Option<&Path>) {
    if let Some(p) = p {
        let _ = std::fs::remove_file(p);
    }
}

/// The local address this host uses to reach `mon` (what an OSD advertises by default).
fn local_ip_towards(mon: &str) -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(mon).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

fn capacity_of(dir: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return 0 };
    // SAFETY: statvfs fills the zeroed struct for a NUL-terminated path.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            st.f_blocks as u64 * st.f_frsize as u64
        } else {
            0
        }
    }
}

pub fn run_osd(global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let id_text = daemon_id(global, &mut words, "osd")?;
    let id: u32 = id_text.parse().map_err(|_| Error::einval(format!("invalid osd id '{id_text}'")))?;
    let entity = format!("osd.{id}");
    let (_, mut conf) = global.conf()?;
    let fsid = fsid(&conf, &entity)?;
    let mons: Vec<String> = mon_members(&conf, &entity)?.into_iter().map(|(_, a)| a).collect();
    let dir = data_dir(&mut words, &conf, &entity, "osd data")?;
    default_keyring(&mut conf, &entity, &dir)?;
    let settings = AuthSettings::from_conf(&conf, &entity)?;
    let secret = match settings.uses_cephx() {
        true => Some(cairn_client::keys::find_secret(&conf, &entity.parse()?)?),
        false => None,
    };
    let datadir = DataDir::open(&dir, &fsid, &entity)?;
    let pid_file = init_process(&conf, &entity)?;
    let mut cfg = OsdConfig::new(id, &fsid, mons.clone());
    cfg.host = conf.get(&entity, "host").unwrap_or_else(hostname);
    cfg.capacity_bytes = match get_u64(&conf, &entity, "osd capacity bytes", 0)? {
        0 => capacity_of(&dir),
        n => n,
    };
    cfg.heartbeat_grace = Duration::from_secs(get_u64(&conf, &entity, "osd heartbeat grace", 20)?);
    cfg.heartbeat_interval =
        Duration::from_millis(get_u64(&conf, &entity, "osd heartbeat interval ms", 1000)?);
    cfg.auth = OsdAuthConfig { settings, secret };
    let bind =
        conf.get(&entity, "public addr").unwrap_or_else(|| format!("{}:0", local_ip_towards(&mons[0])));
    let rt = crate::output::runtime()?;
    rt.block_on(async move {
        let store = Arc::new(RedbStore::open(&datadir.path)?);
        let listener = tokio::net::TcpListener::bind(&bind).await.map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("osd.{id}: cannot listen on {bind}: {e}"),
            )
        })?;
        tokio::select! {
            r = cairn_osd::run(cfg, store, listener, cairn_proto::net::tcp()) => r,
            _ = wait_for_signal() => Ok(()),
        }
    })?;
    remove_pid(pid_file.as_deref());
    Ok(ExitCode::SUCCESS)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

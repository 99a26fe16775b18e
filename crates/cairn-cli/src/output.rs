//! Running operator commands against the monitors and printing what they answer the way Ceph's
//! tools do: data on stdout, status on stderr, `Error ENOENT: …` and the errno as exit status.

use crate::args::Global;
use crate::moncmd;
use cairn_client::Rados;
use cairn_types::Error;
use std::io::Write;
use std::process::ExitCode;

/// Ceph's symbolic errno names, for `Error EEXIST: …`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EAGAIN => "EAGAIN",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ENOTCONN => "ENOTCONN",
        _ => return format!("error {errno}"),
    };
    name.to_string()
}

/// Prints an error as Ceph's `ceph` tool does and returns the errno as exit status.
pub fn fail(e: &Error) -> ExitCode {
    eprintln!("Error {}: {}", errno_name(e.errno), e.message);
    exit_code(e.errno)
}

pub fn exit_code(errno: i32) -> ExitCode {
    ExitCode::from(u8::try_from(errno.clamp(1, 255)).unwrap_or(1))
}

/// A runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(Error::from)
}

/// Connects to the cluster named by the configuration.
pub async fn connect(global: &Global) -> Result<Rados, Error> {
    let (_, conf) = global.conf()?;
    Rados::connect_conf(&conf, &global.name).await
}

/// Largest `-i FILE` input sent with a command.
const MAX_INPUT_BYTES: u64 = 4 << 20;

/// `cairn <ceph words…>`: translate, send to the mon leader, print. As `ceph` does, `-i FILE`
/// sends the file as the command's input (`-` = stdin) and `-o FILE` writes the output there
/// (created mode 0600: it may hold keys) instead of to stdout.
pub fn mon_command(global: &Global, words: &[String]) -> Result<ExitCode, Error> {
    let mut words = words.to_vec();
    let out_file = crate::args::take_opt(&mut words, &["-o", "--out-file"])?;
    let in_file = crate::args::take_opt(&mut words, &["-i", "--in-file"])?;
    let cmd = moncmd::argv_to_command(&words)?;
    let inbuf = match &in_file {
        Some(path) => bytes::Bytes::from(read_input(path)?),
        None => bytes::Bytes::new(),
    };
    let rt = runtime()?;
    let reply = rt.block_on(async {
        let rados = connect(global).await?;
        rados.mon_command_input(&cmd, inbuf).await
    })?;
    if reply.rc != 0 {
        return Ok(fail(&Error::new(reply.rc, reply.status)));
    }
    match out_file {
        Some(path) => write_private(&path, &reply.data)?,
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&reply.data);
            if !reply.data.is_empty() && !reply.data.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
        }
    }
    if !reply.status.is_empty() {
        eprintln!("{}", reply.status);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(path: &str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut buf = Vec::new();
    let limit = MAX_INPUT_BYTES + 1;
    let r = if path == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut buf)
    } else {
        let f = std::fs::File::open(path)
            .map_err(|e| Error::new(Error::from(e).errno, format!("can't open {path}")))?;
        f.take(limit).read_to_end(&mut buf)
    };
    r.map_err(|e| Error::new(Error::from(e).errno, format!("reading {path}")))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(Error::einval(format!("{path}: input larger than {MAX_INPUT_BYTES} bytes")));
    }
    Ok(buf)
}

fn write_private(path: &str, data: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::new(Error::from(e).errno, format!("can't open {path}")))?;
    f.write_all(data)?;
    Ok(())
}

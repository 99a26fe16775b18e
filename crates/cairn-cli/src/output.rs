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

/// `cairn <ceph words…>`: translate, send to the mon leader, print.
pub fn mon_command(global: &Global, words: &[String]) -> Result<ExitCode, Error> {
    let cmd = moncmd::argv_to_command(words)?;
    let rt = runtime()?;
    let reply = rt.block_on(async {
        let rados = connect(global).await?;
        rados.mon_command(&cmd).await
    })?;
    if reply.rc != 0 {
        return Ok(fail(&Error::new(reply.rc, reply.status)));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&reply.data);
    if !reply.data.is_empty() && !reply.data.ends_with(b"\n") {
        let _ = out.write_all(b"\n");
    }
    if !reply.status.is_empty() {
        eprintln!("{}", reply.status);
    }
    Ok(ExitCode::SUCCESS)
}

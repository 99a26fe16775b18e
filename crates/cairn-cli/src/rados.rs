//! `cairn rados …` (the `rados` tool's dialect) and `cairn daemon NAME COMMAND`.

use crate::args::{parse_size, take_flag, take_opt, Global};
use crate::output::{self, connect};
use bytes::Bytes;
use cairn_client::{IoCtx, Rados};
use cairn_types::Error;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// Bytes per write when `put` copies a file (as `rados put`: 4 MiB ops).
const PUT_CHUNK_BYTES: usize = 4 << 20;
/// Largest input `put` reads from a file or stdin.
const MAX_PUT_BYTES: u64 = cairn_types::MAX_OBJECT_SIZE_BYTES;

pub fn main(global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let mut words = args.to_vec();
    let pool = take_opt(&mut words, &["-p", "--pool"])?;
    let rt = output::runtime()?;
    rt.block_on(async {
        let rados = connect(global).await?;
        let cmd = words.first().cloned().unwrap_or_default();
        if cmd == "bench" {
            let pool = pool.ok_or_else(|| Error::einval("rados bench needs -p POOL"))?;
            return crate::rados::bench(&rados, &pool, words[1..].to_vec()).await;
        }
        if cmd == "lspools" {
            for p in rados.map().pools.values() {
                println!("{}", p.name);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let pool = pool.ok_or_else(|| {
            Error::einval(format!("rados {cmd}: pool name was not specified (use -p POOL)"))
        })?;
        let io = rados
            .ioctx(&pool)
            .map_err(|e| Error::new(e.errno, format!("error opening pool {pool}: {}", e.errno_text())))?;
        object_command(&io, &cmd, &words[1..]).await
    })
}

fn arg<'a>(words: &'a [String], i: usize, what: &str) -> Result<&'a str, Error> {
    words.get(i).map(String::as_str).ok_or_else(|| Error::einval(format!("missing {what}")))
}

/// Runs one object command; errors read like `rados`'s: `error getting pool/obj: (2) …`.
async fn object_command(io: &IoCtx, cmd: &str, w: &[String]) -> Result<ExitCode, Error> {
    let pool = io.pool_name.as_str();
    let ctx = |verb: &'static str, obj: &str| {
        let what = format!("{pool}/{obj}");
        move |e: Error| Error::new(e.errno, format!("error {verb} {what}: {}", e.errno_text()))
    };
    match cmd {
        "put" => {
            let (obj, file) = (arg(w, 0, "object name")?, arg(w, 1, "input file")?);
            let data = read_input(file)?;
            put(io, obj, data).await.map_err(ctx("putting", obj))?;
        }
        "get" => {
            let (obj, file) = (arg(w, 0, "object name")?, arg(w, 1, "output file")?);
            let data = io.read(obj, 0, 0).await.map_err(ctx("getting", obj))?;
            write_output(file, &data)?;
        }
        "append" => {
            let (obj, file) = (arg(w, 0, "object name")?, arg(w, 1, "input file")?);
            io.append(obj, read_input(file)?).await.map_err(ctx("appending", obj))?;
        }
        "create" => {
            let obj = arg(w, 0, "object name")?;
            io.create(obj, true).await.map_err(ctx("creating", obj))?;
        }
        "truncate" => {
            let obj = arg(w, 0, "object name")?;
            let size = parse_size(arg(w, 1, "size")?)?;
            io.truncate(obj, size).await.map_err(ctx("truncating", obj))?;
        }
        "rm" => {
            for obj in w {
                io.remove(obj).await.map_err(ctx("removing", obj))?;
            }
        }
        "stat" => {
            let obj = arg(w, 0, "object name")?;
            let st = io.stat(obj).await.map_err(ctx("stat-ing", obj))?;
            println!("{}/{} mtime {}, size {}", io.pool_name, obj, format_time(st.mtime_ns), st.size);
        }
        "ls" => {
            let mut names = io.list_objects().await?;
            names.sort();
            let mut out = std::io::stdout().lock();
            for n in names {
                let _ = writeln!(out, "{n}");
            }
        }
        "setxattr" => {
            let (obj, name) = (arg(w, 0, "object name")?, arg(w, 1, "attribute name")?);
            let value = match w.get(2) {
                Some(v) => Bytes::from(v.clone().into_bytes()),
                None => read_input("-")?,
            };
            io.set_xattr(obj, name, value).await.map_err(ctx("setting xattr on", obj))?;
        }
        "getxattr" => {
            let (obj, name) = (arg(w, 0, "object name")?, arg(w, 1, "attribute name")?);
            let v = io.get_xattr(obj, name).await.map_err(ctx("getting xattr of", obj))?;
            let _ = std::io::stdout().write_all(&v);
            println!();
        }
        "rmxattr" => {
            let (obj, name) = (arg(w, 0, "object name")?, arg(w, 1, "attribute name")?);
            io.rm_xattr(obj, name).await.map_err(ctx("removing xattr of", obj))?;
        }
        "listxattr" => {
            let obj = arg(w, 0, "object name")?;
            for (k, _) in io.list_xattrs(obj).await.map_err(ctx("listing xattrs of", obj))? {
                println!("{k}");
            }
        }
        "setomapval" => {
            let (obj, key) = (arg(w, 0, "object name")?, arg(w, 1, "key")?);
            let value = match w.get(2) {
                Some(v) => Bytes::from(v.clone().into_bytes()),
                None => read_input("-")?,
            };
            io.omap_set(obj, vec![(key.to_string(), value)])
                .await
                .map_err(ctx("setting omap value on", obj))?;
        }
        "getomapval" => {
            let (obj, key) = (arg(w, 0, "object name")?, arg(w, 1, "key")?);
            let vals = io
                .omap_get_vals_by_keys(obj, vec![key.to_string()])
                .await
                .map_err(ctx("getting omap value of", obj))?;
            let Some((_, v)) = vals.into_iter().next() else {
                return Err(Error::enoent(format!(
                    "error getting omap value {}/{obj}/{key}: (2) No such key",
                    io.pool_name
                )));
            };
            match w.get(2) {
                Some(file) => write_output(file, &v)?,
                None => {
                    println!("value ({} bytes) :", v.len());
                    print_hexdump(&v);
                }
            }
        }
        "rmomapkey" => {
            let (obj, key) = (arg(w, 0, "object name")?, arg(w, 1, "key")?);
            io.omap_rm_keys(obj, vec![key.to_string()]).await.map_err(ctx("removing omap key of", obj))?;
        }
        "listomapkeys" => {
            let obj = arg(w, 0, "object name")?;
            for (k, _) in io.omap_get_vals(obj, "").await.map_err(ctx("listing omap keys of", obj))? {
                println!("{k}");
            }
        }
        "listomapvals" => {
            let obj = arg(w, 0, "object name")?;
            for (k, v) in io.omap_get_vals(obj, "").await.map_err(ctx("listing omap values of", obj))? {
                println!("{k}\nvalue ({} bytes) :", v.len());
                print_hexdump(&v);
            }
        }
        "" => return Err(Error::einval("rados: no command given (try `cairn help`)")),
        other => return Err(Error::einval(format!("rados: unrecognized command {other}"))),
    }
    Ok(ExitCode::SUCCESS)
}

async fn put(io: &IoCtx, obj: &str, data: Bytes) -> Result<(), Error> {
    if data.len() <= PUT_CHUNK_BYTES {
        return io.write_full(obj, data).await;
    }
    io.write_full(obj, data.slice(..PUT_CHUNK_BYTES)).await?;
    let mut off = PUT_CHUNK_BYTES;
    while off < data.len() {
        let end = (off + PUT_CHUNK_BYTES).min(data.len());
        io.write(obj, off as u64, data.slice(off..end)).await?;
        off = end;
    }
    Ok(())
}

fn read_input(file: &str) -> Result<Bytes, Error> {
    let mut buf = Vec::new();
    let limit = MAX_PUT_BYTES + 1;
    if file == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(file)
            .map_err(|e| {
                Error::new(e.raw_os_error().unwrap_or(libc::EIO), format!("error reading {file}: {e}"))
            })?
            .take(limit)
            .read_to_end(&mut buf)?;
    }
    if buf.len() as u64 > MAX_PUT_BYTES {
        return Err(Error::new(
            libc::EFBIG,
            format!("{file} is larger than the maximum object size of {MAX_PUT_BYTES} bytes"),
        ));
    }
    Ok(Bytes::from(buf))
}

fn write_output(file: &str, data: &[u8]) -> Result<(), Error> {
    if file == "-" {
        std::io::stdout().lock().write_all(data)?;
    } else {
        std::fs::write(file, data)?;
    }
    Ok(())
}

fn print_hexdump(v: &[u8]) {
    for (i, chunk) in v.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String =
            chunk.iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '.' }).collect();
        println!("{:08x}  {:<47}  |{}|", i * 16, hex.join(" "), text);
    }
    println!("{:08x}", v.len());
}

fn format_time(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let micros = (ns / 1000) % 1_000_000;
    // SAFETY: gmtime_r fills a zeroed tm from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+0000",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        micros
    )
}

/// `cairn daemon osd.N|mon.X COMMAND…`: an admin command answered by that daemon, as JSON.
pub fn admin_command(global: &Global, args: &[String]) -> Result<ExitCode, Error> {
    let name = arg(args, 0, "daemon name (osd.N or mon.X)")?.to_string();
    let command = args[1..].join(" ");
    let rt = output::runtime()?;
    let json = rt.block_on(async {
        let rados = connect(global).await?;
        let map = rados.map();
        let addr = if let Some(id) = name.strip_prefix("osd.") {
            let id: u32 = id.parse().map_err(|_| Error::einval(format!("invalid daemon name '{name}'")))?;
            map.osds
                .get(&id)
                .map(|o| o.addr.clone())
                .ok_or_else(|| Error::enoent(format!("{name} does not exist")))?
        } else if let Some(id) = name.strip_prefix("mon.") {
            map.mons
                .iter()
                .find(|m| m.name == id)
                .map(|m| m.addr.clone())
                .ok_or_else(|| Error::enoent(format!("{name} does not exist")))?
        } else {
            return Err(Error::einval(format!("invalid daemon name '{name}' (osd.N or mon.X)")));
        };
        rados.admin(&addr, &command).await
    })?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// `rados bench SECONDS write|seq|rand [-b SIZE] [-t N] [--no-cleanup] [--run-name NAME]`.
async fn bench(rados: &Rados, pool: &str, mut words: Vec<String>) -> Result<ExitCode, Error> {
    let block = take_opt(&mut words, &["-b", "--block-size"])?
        .map(|s| parse_size(&s))
        .transpose()?
        .unwrap_or(4 << 20);
    let threads: usize = take_opt(&mut words, &["-t", "--concurrent-ios"])?
        .map(|s| s.parse().map_err(|_| Error::einval(format!("-t: invalid number '{s}'"))))
        .transpose()?
        .unwrap_or(16);
    let no_cleanup = take_flag(&mut words, &["--no-cleanup"]);
    let run_name = take_opt(&mut words, &["--run-name"])?.unwrap_or_else(|| "benchmark_last_metadata".into());
    let secs: u64 =
        arg(&words, 0, "seconds")?.parse().map_err(|_| Error::einval("rados bench: invalid seconds"))?;
    let mode = arg(&words, 1, "write|seq|rand")?.to_string();
    if block == 0 || block > 64 << 20 || threads == 0 || threads > 1024 {
        return Err(Error::einval("rados bench: -b must be 1 byte to 64 MiB and -t 1 to 1024"));
    }
    let io = rados.ioctx(pool)?;
    crate::bench::run(&io, &mode, Duration::from_secs(secs), block as usize, threads, no_cleanup, &run_name)
        .await
}

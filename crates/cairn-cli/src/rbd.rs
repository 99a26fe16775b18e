//! `cairn rbd …`: the `rbd` tool's dialect (Ceph 16) over `cairn-rbd`: the same commands,
//! options, output, error lines and exit statuses (the errno, as `rbd` returns `abs(r)`).
//!
//! Progress lines (`Importing image: 45% complete...`) go to stderr when it is a terminal
//! and `--no-progress` is not given. See docs/rbd.md for what differs from Ceph.

use crate::args::{parse_size, Global};
use crate::output;
use bytes::Bytes;
use cairn_client::{IoCtx, Rados};
use cairn_rbd::diff::{self, Extent};
use cairn_rbd::{features, CreateOptions, Image};
use cairn_types::conf::Conf;
use cairn_types::{errno, Error, Result};
use futures::{StreamExt, TryStreamExt};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

pub const USAGE: &str = "\
usage: cairn rbd <command> ...   (as Ceph's `rbd`)

  create --size N [--object-size S | --order N] [--image-feature F]... [--stripe-unit S --stripe-count N] IMAGE
  ls [-l] [POOL]            info IMAGE[@SNAP]          status IMAGE        du [IMAGE[@SNAP]]
  resize --size N [--allow-shrink] IMAGE               rm IMAGE            mv|rename SRC DEST
  cp|copy SRC[@SNAP] DEST   flatten IMAGE              children IMAGE[@SNAP]
  clone PARENT@SNAP CHILD [--rbd-default-clone-format 2]
  snap create|ls|rm|purge|rollback|protect|unprotect|rename IMAGE[@SNAP] [DEST@SNAP]
  import [--object-size S | --order N] [--dest-pool P] FILE|- [IMAGE]
  export IMAGE[@SNAP] FILE|-
  export-diff [--from-snap S] IMAGE[@SNAP] FILE|-    import-diff FILE|- IMAGE
  diff [--from-snap S] IMAGE[@SNAP]
  trash mv IMAGE [--expires-at T] | ls [-l] [POOL] | restore ID [--image NAME] | rm [--force] ID | purge
  lock ls IMAGE | add IMAGE ID [--shared TAG] | rm IMAGE ID LOCKER
  image-meta list IMAGE | get IMAGE KEY | set IMAGE KEY VALUE | remove IMAGE KEY
  bench --io-type read|write [--io-size S] [--io-threads N] [--io-total S] [--io-pattern seq|rand] IMAGE

IMAGE is [POOL/]NAME (default pool `rbd`, or `rbd default pool` in the conf); -p/--pool, --image,
--snap, --dest-pool, --dest also work. Sizes take B/K/M/G/T; a plain --size is in MiB.
Options: --format plain|json [--pretty-format], --no-progress.
";

/// `rbd` exits with `EXIT_FAILURE` (1) when it cannot parse its arguments.
const EXIT_FAILURE: i32 = 1;
/// The exclusive lock's name, which advisory locks (`rbd lock`) share, as in librbd.
const LOCK_NAME: &str = cairn_rbd::image::EXCLUSIVE_LOCK_NAME;
/// Blocks of this size that are all zero are not written by import and export (Ceph's
/// default `--sparse-size`).
const SPARSE_BYTES: u64 = 4096;
/// Bytes of image data import and export keep in flight.
const COPY_BYTES_IN_FLIGHT: u64 = 64 << 20;
/// Chunks import and export keep in flight at most.
const COPY_CHUNKS_IN_FLIGHT: usize = 8;
/// A streamed import (from stdin) grows the image this much at a time.
const STREAM_GROW_BYTES: u64 = 256 << 20;
/// Most ops `rbd bench` keeps in flight.
const MAX_BENCH_THREADS: u64 = 1024;
/// Largest I/O `rbd bench` issues.
const MAX_BENCH_IO_BYTES: u64 = 64 << 20;
/// Seconds `rbd bench` averages its per-second lines over (Ceph's window).
const BENCH_WINDOW: usize = 5;

pub fn main(global: &Global, args: &[String]) -> ExitCode {
    let result = match args.first().map(String::as_str) {
        Some("device") => crate::nbd::device(global, &args[1..]),
        _ => run(global, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("{}", e.message);
            }
            output::exit_code(e.errno)
        }
    }
}

fn run(global: &Global, args: &[String]) -> Result<ExitCode> {
    let opts = Opts::parse(args)?;
    let words: Vec<&str> = opts.pos.iter().map(String::as_str).collect();
    let (cmd, nwords) = match words.as_slice() {
        [] | ["help", ..] => {
            print!("{USAGE}");
            return Ok(ExitCode::SUCCESS);
        }
        [group @ ("snap" | "trash" | "lock" | "image-meta"), sub, ..] => (format!("{group} {sub}"), 2),
        [group @ ("snap" | "trash" | "lock" | "image-meta")] => {
            return Err(Error::new(EXIT_FAILURE, format!("rbd: {group}: missing subcommand\n\n{USAGE}")));
        }
        [first, ..] => (first.to_string(), 1),
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(Error::new(EXIT_FAILURE, format!("Error: unknown option '{cmd}'\n\n{USAGE}")));
    }
    let mut opts = opts;
    opts.pos.drain(..nwords);
    let (_, conf) = global.conf()?;
    let rt = output::runtime()?;
    rt.block_on(async {
        let rados = output::connect(global).await.map_err(|e| {
            Error::new(e.errno, format!("rbd: couldn't connect to the cluster: {}", e.message))
        })?;
        let ctx = Ctx::new(rados, conf, global.name.clone(), opts)?;
        dispatch(&ctx, &cmd).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Every command `dispatch` knows, checked before connecting.
const COMMANDS: &[&str] = &[
    "create",
    "ls",
    "list",
    "info",
    "resize",
    "rm",
    "remove",
    "mv",
    "rename",
    "cp",
    "copy",
    "clone",
    "children",
    "flatten",
    "du",
    "disk-usage",
    "status",
    "diff",
    "import",
    "export",
    "export-diff",
    "import-diff",
    "bench",
    "snap create",
    "snap add",
    "snap ls",
    "snap list",
    "snap rm",
    "snap remove",
    "snap purge",
    "snap rollback",
    "snap revert",
    "snap protect",
    "snap unprotect",
    "snap rename",
    "trash mv",
    "trash move",
    "trash ls",
    "trash list",
    "trash restore",
    "trash rm",
    "trash remove",
    "trash purge",
    "lock ls",
    "lock list",
    "lock add",
    "lock rm",
    "lock remove",
    "image-meta list",
    "image-meta ls",
    "image-meta get",
    "image-meta set",
    "image-meta remove",
    "image-meta rm",
];

async fn dispatch(ctx: &Ctx, cmd: &str) -> Result<()> {
    match cmd {
        "create" => create(ctx).await,
        "ls" | "list" => ls(ctx).await,
        "info" => info(ctx).await,
        "resize" => resize(ctx).await,
        "rm" | "remove" => rm(ctx).await,
        "mv" | "rename" => rename(ctx).await,
        "cp" | "copy" => copy(ctx).await,
        "clone" => clone(ctx).await,
        "children" => children(ctx).await,
        "flatten" => flatten(ctx).await,
        "du" | "disk-usage" => du(ctx).await,
        "status" => status(ctx).await,
        "diff" => diff_cmd(ctx).await,
        "import" => import(ctx).await,
        "export" => export(ctx).await,
        "export-diff" => export_diff(ctx).await,
        "import-diff" => import_diff(ctx).await,
        "bench" => bench(ctx).await,
        "snap create" | "snap add" => snap_create(ctx).await,
        "snap ls" | "snap list" => snap_ls(ctx).await,
        "snap rm" | "snap remove" => snap_rm(ctx).await,
        "snap purge" => snap_purge(ctx).await,
        "snap rollback" | "snap revert" => snap_rollback(ctx).await,
        "snap protect" => snap_protect(ctx, true).await,
        "snap unprotect" => snap_protect(ctx, false).await,
        "snap rename" => snap_rename(ctx).await,
        "trash mv" | "trash move" => trash_mv(ctx).await,
        "trash ls" | "trash list" => trash_ls(ctx).await,
        "trash restore" => trash_restore(ctx).await,
        "trash rm" | "trash remove" => trash_rm(ctx).await,
        "trash purge" => trash_purge(ctx).await,
        "lock ls" | "lock list" => lock_ls(ctx).await,
        "lock add" => lock_add(ctx).await,
        "lock rm" | "lock remove" => lock_rm(ctx).await,
        "image-meta list" | "image-meta ls" => meta_list(ctx).await,
        "image-meta get" => meta_get(ctx).await,
        "image-meta set" => meta_set(ctx).await,
        "image-meta remove" | "image-meta rm" => meta_remove(ctx).await,
        other => Err(Error::new(EXIT_FAILURE, format!("Error: unknown option '{other}'\n\n{USAGE}"))),
    }
}

// ===================================================================================== options

/// Options that take a value. `--rbd-*` config overrides (`--rbd-default-clone-format 2`)
/// take one too.
const VALUE_OPTS: &[&str] = &[
    "--pool",
    "--image",
    "--snap",
    "--dest",
    "--dest-pool",
    "--dest-snap",
    "--path",
    "--size",
    "--object-size",
    "--order",
    "--image-feature",
    "--image-format",
    "--stripe-unit",
    "--stripe-count",
    "--data-pool",
    "--from-snap",
    "--format",
    "--io-type",
    "--io-size",
    "--io-threads",
    "--io-total",
    "--io-pattern",
    "--expires-at",
    "--image-id",
    "--shared",
    "--sparse-size",
    "--export-format",
];
const FLAG_OPTS: &[&str] =
    &["--long", "--allow-shrink", "--no-progress", "--pretty-format", "--force", "--whole-object", "--all"];
const SHORT_OPTS: &[(&str, &str)] = &[("-p", "--pool"), ("-s", "--size"), ("-l", "--long"), ("-a", "--all")];

/// The command line after the global options: options anywhere, as boost's parser allows.
#[derive(Debug, Default)]
struct Opts {
    values: Vec<(String, String)>,
    flags: Vec<String>,
    pos: Vec<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-" || !a.starts_with('-') {
                o.pos.push(a.clone());
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            let name = SHORT_OPTS.iter().find(|(s, _)| *s == name).map_or(name, |(_, l)| l.to_string());
            let name = if name.starts_with("--rbd") { name.replace('_', "-") } else { name };
            if FLAG_OPTS.contains(&name.as_str()) && inline.is_none() {
                o.flags.push(name);
            } else if VALUE_OPTS.contains(&name.as_str()) || name.starts_with("--rbd-") {
                let value = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| {
                        Error::new(
                            EXIT_FAILURE,
                            format!("rbd: the required argument for option '{name}' is missing"),
                        )
                    })?,
                };
                o.values.push((name, value));
            } else {
                return Err(Error::new(EXIT_FAILURE, format!("rbd: unrecognised option '{a}'")));
            }
        }
        Ok(o)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn pos(&self, i: usize) -> Option<&str> {
        self.pos.get(i).map(String::as_str)
    }
}

fn invalid_arg(name: &str) -> Error {
    Error::new(EXIT_FAILURE, format!("rbd: the argument for option '{name}' is invalid"))
}

/// A size option in bytes (`4K`, `1G`, `4096`).
fn size_opt(ctx: &Ctx, name: &str) -> Result<Option<u64>> {
    ctx.opts.get(name).map(|s| parse_size(s).map_err(|_| invalid_arg(name))).transpose()
}

/// `--size`: a plain number is MiB, as in Ceph.
fn image_size_opt(ctx: &Ctx) -> Result<Option<u64>> {
    let Some(s) = ctx.opts.get("--size") else { return Ok(None) };
    let bytes = parse_size(s).map_err(|_| invalid_arg("--size"))?;
    if s.ends_with(|c: char| c.is_ascii_digit()) {
        return bytes.checked_mul(1 << 20).map(Some).ok_or_else(|| invalid_arg("--size"));
    }
    Ok(Some(bytes))
}

fn u64_opt(ctx: &Ctx, name: &str) -> Result<Option<u64>> {
    ctx.opts.get(name).map(|s| s.parse::<u64>().map_err(|_| invalid_arg(name))).transpose()
}

// ===================================================================================== context

struct Ctx {
    rados: Rados,
    conf: Conf,
    entity: String,
    opts: Opts,
    /// `Some(pretty)` with `--format json`.
    json: Option<bool>,
    progress: bool,
}

/// Whether a snapshot may, must or must not be named (Ceph's `SnapshotPresence`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SnapRule {
    None,
    Permitted,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    pool: String,
    image: String,
    snap: Option<String>,
}

impl Ctx {
    fn new(rados: Rados, conf: Conf, entity: String, opts: Opts) -> Result<Ctx> {
        let pretty = opts.flag("--pretty-format");
        let json = match opts.get("--format") {
            None | Some("plain") => None,
            Some("json") => Some(pretty),
            Some("json-pretty") => Some(true),
            Some("xml") => {
                return Err(Error::new(errno::EOPNOTSUPP, "rbd: --format xml is not supported by Cairn"))
            }
            Some(_) => return Err(invalid_arg("--format")),
        };
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
        let progress = tty && !opts.flag("--no-progress");
        Ok(Ctx { rados, conf, entity, opts, json, progress })
    }

    /// A configuration option: `--rbd-x-y` on the command line, else `rbd x y` in the conf.
    fn config(&self, key: &str) -> Option<String> {
        let flag = format!("--{}", key.replace([' ', '_'], "-"));
        self.opts.get(&flag).map(str::to_string).or_else(|| self.conf.get(&self.entity, key))
    }

    fn default_pool(&self) -> String {
        self.config("rbd default pool").unwrap_or_else(|| "rbd".into())
    }

    fn ioctx(&self, pool: &str) -> Result<IoCtx> {
        self.rados
            .ioctx(pool)
            .map_err(|e| Error::new(e.errno, format!("rbd: error opening pool '{pool}': {}", e.errno_text())))
    }

    /// The image spec at positional `*idx` (or `--image`, `--pool`, `--snap`), as Ceph's
    /// `get_pool_image_snapshot_names`.
    fn spec(&self, idx: &mut usize, rule: SnapRule) -> Result<Spec> {
        self.spec_with(idx, rule, ["--pool", "--image", "--snap"], "", None)
    }

    /// The destination spec (`--dest-pool`, `--dest`, `--dest-snap`); its pool defaults to
    /// `default_pool`.
    fn dest_spec(&self, idx: &mut usize, rule: SnapRule, default_pool: String) -> Result<Spec> {
        self.spec_with(
            idx,
            rule,
            ["--dest-pool", "--dest", "--dest-snap"],
            "destination ",
            Some(default_pool),
        )
    }

    fn spec_with(
        &self,
        idx: &mut usize,
        rule: SnapRule,
        keys: [&str; 3],
        what: &str,
        default_pool: Option<String>,
    ) -> Result<Spec> {
        let mut pool = self.opts.get(keys[0]).map(str::to_string);
        let mut snap = self.opts.get(keys[2]).map(str::to_string);
        let text = match self.opts.get(keys[1]) {
            Some(image) => Some(image.to_string()),
            None => {
                let p = self.opts.pos(*idx).map(str::to_string);
                if p.is_some() {
                    *idx += 1;
                }
                p
            }
        };
        let mut image = None;
        if let Some(text) = text {
            let (p, i, s) = parse_spec(&text)?;
            pool = p.or(pool);
            snap = s.or(snap);
            image = Some(i);
        }
        let image = image.ok_or_else(|| Error::einval(format!("rbd: {what}image name was not specified")))?;
        match (rule, &snap) {
            (SnapRule::None, Some(_)) => {
                return Err(Error::einval(format!(
                    "rbd: {what}snapshot name specified for a command that doesn't use it"
                )))
            }
            (SnapRule::Required, None) => {
                return Err(Error::einval(format!("rbd: {what}snapshot name was not specified")))
            }
            _ => {}
        }
        let pool = pool.or(default_pool).unwrap_or_else(|| self.default_pool());
        Ok(Spec { pool, image, snap })
    }

    /// Opens the image of `spec` (at its snapshot, read-only, if it names one), with Ceph's
    /// error lines.
    async fn open(&self, io: &IoCtx, spec: &Spec, read_only: bool) -> Result<Image> {
        match Image::open(io, &spec.image, spec.snap.as_deref(), read_only).await {
            Ok(image) => Ok(image),
            Err(e) if e.errno == errno::ENOENT && spec.snap.is_some() => {
                if cairn_rbd::image_id(io, &spec.image).await.is_ok() {
                    Err(Error::enoent(format!("error setting snapshot context: {}", e.errno_text())))
                } else {
                    Err(open_error(&spec.image, &e))
                }
            }
            Err(e) => Err(open_error(&spec.image, &e)),
        }
    }

    async fn open_spec(&self, rule: SnapRule, read_only: bool) -> Result<(Spec, IoCtx, Image)> {
        let spec = self.spec(&mut 0, rule)?;
        let io = self.ioctx(&spec.pool)?;
        let image = self.open(&io, &spec, read_only).await?;
        Ok((spec, io, image))
    }

    fn bar(&self, op: &'static str) -> Bar {
        Bar { op, on: self.progress, last_pc: AtomicU64::new(0) }
    }

    fn print_json(&self, j: &J) {
        println!("{}", j.render(self.json == Some(true)));
    }
}

fn open_error(name: &str, e: &Error) -> Error {
    Error::new(e.errno, format!("rbd: error opening image {name}: {}", e.errno_text()))
}

/// `[pool/[namespace/]]image[@snap]` → (pool, image, snap).
fn parse_spec(text: &str) -> Result<(Option<String>, String, Option<String>)> {
    let invalid = || Error::einval(format!("rbd: invalid spec '{text}'"));
    let (path, snap) = match text.split_once('@') {
        Some((p, s)) if !s.is_empty() => (p, Some(s.to_string())),
        Some(_) => return Err(invalid()),
        None => (text, None),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let (pool, image) = match parts.as_slice() {
        [image] => (None, *image),
        [pool, image] => (Some(pool.to_string()), *image),
        [_, _, _] => return Err(Error::new(errno::EOPNOTSUPP, "rbd: namespaces are not supported by Cairn")),
        _ => return Err(invalid()),
    };
    if image.is_empty() || pool.as_deref() == Some("") {
        return Err(invalid());
    }
    Ok((pool, image.to_string(), snap))
}

/// `rbd: <what>: (17) File exists`.
fn failed(what: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| Error::new(e.errno, format!("rbd: {what}: {}", e.errno_text()))
}

/// As [`failed`], with the library's reason on a line before (where Ceph logs librbd's).
fn failed_why(what: &str) -> impl Fn(Error) -> Error + '_ {
    move |e| {
        let why = if e.message.is_empty() { String::new() } else { format!("librbd: {}\n", e.message) };
        Error::new(e.errno, format!("{why}rbd: {what}: {}", e.errno_text()))
    }
}

// ===================================================================================== output

/// Ceph's progress line on stderr: `\rImporting image: 45% complete...`, then `done.` or
/// `failed.`.
struct Bar {
    op: &'static str,
    on: bool,
    last_pc: AtomicU64,
}

impl Bar {
    fn update(&self, done: u64, total: u64) {
        if !self.on || total == 0 {
            return;
        }
        let pc = (u128::from(done.min(total)) * 100 / u128::from(total)) as u64;
        if self.last_pc.fetch_max(pc, Ordering::Relaxed) < pc {
            eprint!("\r{}: {pc}% complete...", self.op);
        }
    }

    fn finish(&self) {
        if self.on {
            eprintln!("\r{}: 100% complete...done.", self.op);
        }
    }

    fn fail(&self) {
        if self.on {
            eprintln!("\r{}: {}% complete...failed.", self.op, self.last_pc.load(Ordering::Relaxed));
        }
    }

    /// Prints `done.` or `failed.` for `r`.
    fn end<T>(&self, r: Result<T>) -> Result<T> {
        match &r {
            Ok(_) => self.finish(),
            Err(_) => self.fail(),
        }
        r
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

use Align::{Left, Right};

/// Ceph's `TextTable`: columns two spaces apart, every cell padded to its column's width.
struct Table {
    cols: Vec<(&'static str, Align, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `(heading, heading alignment, cell alignment)` per column.
    fn new(cols: &[(&'static str, Align, Align)]) -> Table {
        Table { cols: cols.to_vec(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.cols.len());
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.cols.len())
            .map(|i| {
                let cells = self.rows.iter().map(|r| r[i].chars().count());
                cells.chain([self.cols[i].0.len()]).max().unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<(&str, Align)>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|((c, a), w)| match a {
                    Left => format!("{c:<w$}"),
                    Right => format!("{c:>w$}"),
                })
                .collect();
            padded.join("  ") + "\n"
        };
        let mut out = line(self.cols.iter().map(|(h, a, _)| (*h, *a)).collect());
        for r in &self.rows {
            out += &line(r.iter().zip(&self.cols).map(|(c, (_, _, a))| (c.as_str(), *a)).collect());
        }
        out
    }
}

/// JSON whose keys keep their order, printed as Ceph's `JSONFormatter` does.
enum J {
    S(String),
    U(u64),
    B(bool),
    A(Vec<J>),
    O(Vec<(String, J)>),
}

fn s(v: impl Into<String>) -> J {
    J::S(v.into())
}

fn obj(fields: Vec<(&str, J)>) -> J {
    J::O(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Ceph prints booleans of these listings as strings.
fn tf(b: bool) -> J {
    s(if b { "true" } else { "false" })
}

impl J {
    fn render(&self, pretty: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, pretty, 0);
        out
    }

    fn write(&self, out: &mut String, pretty: bool, depth: usize) {
        let quote = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        match self {
            J::S(v) => out.push_str(&quote(v)),
            J::U(v) => out.push_str(&v.to_string()),
            J::B(v) => out.push_str(if *v { "true" } else { "false" }),
            J::A(items) => {
                let items: Vec<(Option<String>, &J)> = items.iter().map(|j| (None, j)).collect();
                Self::write_seq(out, pretty, depth, ('[', ']'), &items)
            }
            J::O(fields) => {
                let items: Vec<(Option<String>, &J)> =
                    fields.iter().map(|(k, j)| (Some(quote(k)), j)).collect();
                Self::write_seq(out, pretty, depth, ('{', '}'), &items)
            }
        }
    }

    fn write_seq(
        out: &mut String,
        pretty: bool,
        depth: usize,
        br: (char, char),
        items: &[(Option<String>, &J)],
    ) {
        out.push(br.0);
        for (i, (key, value)) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if pretty {
                out.push('\n');
                out.push_str(&"    ".repeat(depth + 1));
            }
            if let Some(k) = key {
                out.push_str(k);
                out.push_str(if pretty { ": " } else { ":" });
            }
            value.write(out, pretty, depth + 1);
        }
        if pretty && !items.is_empty() {
            out.push('\n');
            out.push_str(&"    ".repeat(depth));
        }
        out.push(br.1);
    }
}

/// Ceph's `byte_u_t`: `1 GiB`, `9.8 MiB`, `1.0 KiB`, `512 B`.
fn bytes_h(v: u64) -> String {
    const UNITS: [&str; 7] = [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"];
    let mut n = v;
    let mut index = 0;
    while n >= 1024 && index < UNITS.len() - 1 {
        n /= 1024;
        index += 1;
    }
    let unit = UNITS[index];
    let mult = 1u64 << (10 * index);
    if index == 0 || v.is_multiple_of(mult) {
        return format!("{n}{unit}");
    }
    let d = v as f64 / mult as f64;
    let mut text = String::new();
    for precision in (0..=2).rev() {
        text = format!("{d:.precision$}{unit}");
        if text.len() <= 7 {
            break;
        }
    }
    text
}

/// `ctime(3)` without its newline: `Sat Nov 21 15:30:15 2026`, local time.
fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let t = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
    // SAFETY: localtime_r fills a zeroed tm from a valid time_t.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// C++'s default `ostream << double` (`%g`, six significant digits).
fn g6(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return if x == 0.0 { "0".into() } else { x.to_string() };
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-5..6).contains(&exp) {
        return format!("{x:.5e}");
    }
    let decimals = (5 - exp).max(0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

// ===================================================================================== images

/// `--order`/`--object-size`, `--image-feature`, `--stripe-unit`/`--stripe-count`, with the
/// `rbd default …` options behind them.
fn create_options(ctx: &Ctx) -> Result<CreateOptions> {
    if let Some(f) = ctx.opts.get("--image-format") {
        if f != "2" {
            return Err(Error::einval(format!("rbd: image format {f} is not supported by Cairn (only 2)")));
        }
    }
    if ctx.opts.get("--data-pool").is_some() {
        return Err(Error::new(errno::EOPNOTSUPP, "rbd: --data-pool is not supported by Cairn"));
    }
    let order = match (u64_opt(ctx, "--order")?, size_opt(ctx, "--object-size")?) {
        (Some(o), _) => Some(o),
        // Ceph: order = round(log2(object size)).
        (None, Some(size)) if size > 0 => Some((size as f64).log2().round() as u64),
        (None, Some(_)) => return Err(invalid_arg("--object-size")),
        (None, None) => ctx
            .config("rbd default order")
            .map(|o| o.parse().map_err(|_| invalid_arg("--order")))
            .transpose()?,
    };
    let order = match order {
        Some(o) if (12..=25).contains(&o) => Some(o as u8),
        Some(_) => {
            return Err(invalid_arg(if ctx.opts.get("--order").is_some() {
                "--order"
            } else {
                "--object-size"
            }))
        }
        None => None,
    };
    let names = ctx.opts.all("--image-feature");
    let features = if names.is_empty() {
        ctx.config("rbd default features").map(|f| parse_features(&f)).transpose()?
    } else {
        Some(
            names
                .iter()
                .map(|f| parse_features(f))
                .collect::<Result<Vec<u64>>>()?
                .into_iter()
                .fold(0, |a, b| a | b),
        )
    };
    let stripe_unit = size_opt(ctx, "--stripe-unit")?;
    let stripe_count = u64_opt(ctx, "--stripe-count")?;
    if stripe_unit.is_some() != stripe_count.is_some() {
        return Err(Error::einval("rbd: must specify both (or neither) of stripe-unit and stripe-count"));
    }
    Ok(CreateOptions {
        order,
        features,
        stripe_unit: stripe_unit.unwrap_or(0),
        stripe_count: stripe_count.unwrap_or(0),
    })
}

/// `layering,exclusive-lock` or `61`.
fn parse_features(text: &str) -> Result<u64> {
    text.split([',', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| features::parse(w.trim()).map_err(|_| invalid_arg("--image-feature")))
        .try_fold(0, |a, b| Ok(a | b?))
}

async fn create(ctx: &Ctx) -> Result<()> {
    let spec = ctx.spec(&mut 0, SnapRule::None)?;
    let size = image_size_opt(ctx)?.ok_or_else(|| Error::einval("rbd: must specify --size <M/G/T>"))?;
    let opts = create_options(ctx)?;
    let io = ctx.ioctx(&spec.pool)?;
    cairn_rbd::create(&io, &spec.image, size, &opts).await.map_err(failed_why("create error"))
}

async fn ls(ctx: &Ctx) -> Result<()> {
    let pool = ctx.opts.get("--pool").map(str::to_string).or_else(|| ctx.opts.pos(0).map(str::to_string));
    let pool = pool.unwrap_or_else(|| ctx.default_pool());
    let io = ctx.ioctx(&pool)?;
    let names = cairn_rbd::list(&io).await.map_err(failed("listing images failed"))?;
    if !ctx.opts.flag("--long") {
        match ctx.json {
            Some(_) => ctx.print_json(&J::A(names.into_iter().map(J::S).collect())),
            None => names.iter().for_each(|n| println!("{n}")),
        }
        return Ok(());
    }
    let mut table = Table::new(&[
        ("NAME", Left, Left),
        ("SIZE", Left, Right),
        ("PARENT", Left, Left),
        ("FMT", Left, Right),
        ("PROT", Left, Left),
        ("LOCK", Left, Left),
    ]);
    let mut json = Vec::new();
    for name in names {
        let Ok(image) = Image::open(&io, &name, None, true).await else { continue };
        ls_long_rows(&io, &image, &mut table, &mut json).await?;
    }
    match ctx.json {
        Some(_) => ctx.print_json(&J::A(json)),
        None if !table.rows.is_empty() => print!("{}", table.render()),
        None => {}
    }
    Ok(())
}

/// The `ls -l` rows of one image: the image, then each of its snapshots.
async fn ls_long_rows(io: &IoCtx, image: &Image, table: &mut Table, json: &mut Vec<J>) -> Result<()> {
    let parent = image.parent_info().await.ok();
    let lock = image.lock_state(LOCK_NAME).await.ok().filter(|l| !l.holders.is_empty());
    let lock_type = lock.map(|l| if l.exclusive { "exclusive" } else { "shared" });
    table.row(vec![
        image.name().to_string(),
        bytes_h(image.size()),
        parent.as_ref().map(parent_text).unwrap_or_default(),
        "2".into(),
        String::new(),
        lock_type.map(|t| if t == "exclusive" { "excl" } else { "shr" }).unwrap_or_default().into(),
    ]);
    let mut fields = vec![("image", s(image.name())), ("id", s(image.id())), ("size", J::U(image.size()))];
    if let Some(p) = &parent {
        fields.push(("parent", parent_json(p, false)));
    }
    fields.push(("format", J::U(2)));
    if let Some(t) = lock_type {
        fields.push(("lock_type", s(t)));
    }
    json.push(obj(fields));
    for snap in image.header().snaps.iter().filter(|s| s.namespace == cairn_proto::cls::SnapNamespace::User) {
        let parent = match &snap.parent {
            Some(_) => match Image::open(io, image.name(), Some(&snap.name), true).await {
                Ok(at_snap) => at_snap.parent_info().await.ok(),
                Err(_) => None,
            },
            None => None,
        };
        table.row(vec![
            format!("{}@{}", image.name(), snap.name),
            bytes_h(snap.size),
            parent.as_ref().map(parent_text).unwrap_or_default(),
            "2".into(),
            if snap.protected { "yes".into() } else { String::new() },
            String::new(),
        ]);
        let mut fields = vec![
            ("image", s(image.name())),
            ("id", s(image.id())),
            ("snapshot", s(&snap.name)),
            ("snapshot_id", J::U(snap.id)),
            ("size", J::U(snap.size)),
        ];
        if let Some(p) = &parent {
            fields.push(("parent", parent_json(p, false)));
        }
        fields.push(("format", J::U(2)));
        fields.push(("protected", tf(snap.protected)));
        json.push(obj(fields));
    }
    Ok(())
}

fn parent_text(p: &cairn_rbd::ParentInfo) -> String {
    format!("{}/{}@{}", p.pool_name, p.image_name, p.snap_name)
}

/// `{"pool", "pool_namespace", "image", ["id",] "snapshot", …}`; `info` adds the id, trash
/// flag and overlap.
fn parent_json(p: &cairn_rbd::ParentInfo, full: bool) -> J {
    let mut f = vec![("pool", s(&p.pool_name)), ("pool_namespace", s("")), ("image", s(&p.image_name))];
    if full {
        f.push(("id", s(&p.image_id)));
    }
    f.push(("snapshot", s(&p.snap_name)));
    if full {
        f.push(("trash", J::B(false)));
        f.push(("overlap", J::U(p.overlap)));
    }
    obj(f)
}

/// What `rbd info` shows.
struct InfoView {
    i: cairn_rbd::ImageInfo,
    features: Vec<&'static str>,
    flags: Vec<&'static str>,
    created: Option<String>,
    /// Opened at a snapshot: whether it is protected.
    protected: Option<bool>,
    parent: Option<cairn_rbd::ParentInfo>,
    striped: bool,
}

async fn info(ctx: &Ctx) -> Result<()> {
    let (spec, _io, image) = ctx.open_spec(SnapRule::Permitted, true).await?;
    let i = image.info();
    let h = image.header();
    let parent = match image.parent_info().await {
        Ok(p) => Some(p),
        Err(e) if e.errno == errno::ENOENT => None,
        Err(e) => return Err(failed("info")(e)),
    };
    let view = InfoView {
        features: features::names(i.features),
        flags: [(1u64, "object map invalid"), (2, "fast diff invalid")]
            .iter()
            .filter(|(b, _)| h.flags & b != 0)
            .map(|(_, n)| *n)
            .collect(),
        created: (i.create_timestamp_secs != 0).then(|| ctime(i.create_timestamp_secs)),
        protected: spec.snap.as_ref().and_then(|n| h.user_snap_named(n)).map(|s| s.protected),
        parent,
        striped: i.features & features::STRIPINGV2 != 0,
        i,
    };
    match ctx.json {
        Some(_) => ctx.print_json(&info_json(&view)),
        None => print!("{}", info_text(&view)),
    }
    Ok(())
}

fn info_json(v: &InfoView) -> J {
    let i = &v.i;
    let mut f = vec![
        ("name", s(&i.name)),
        ("id", s(&i.id)),
        ("size", J::U(i.size)),
        ("objects", J::U(i.num_objects)),
        ("order", J::U(u64::from(i.order))),
        ("object_size", J::U(i.object_size)),
        ("snapshot_count", J::U(i.snapshot_count as u64)),
        ("block_name_prefix", s(&i.block_name_prefix)),
        ("format", J::U(2)),
        ("features", J::A(v.features.iter().map(|n| s(*n)).collect())),
        ("op_features", J::A(Vec::new())),
        ("flags", J::A(v.flags.iter().map(|n| s(*n)).collect())),
    ];
    if let Some(c) = &v.created {
        f.push(("create_timestamp", s(c)));
    }
    if let Some(p) = v.protected {
        f.push(("protected", tf(p)));
    }
    if let Some(p) = &v.parent {
        f.push(("parent", parent_json(p, true)));
    }
    if v.striped {
        f.push(("stripe_unit", J::U(i.stripe_unit)));
        f.push(("stripe_count", J::U(i.stripe_count)));
    }
    obj(f)
}

fn info_text(v: &InfoView) -> String {
    let i = &v.i;
    let mut out = format!(
        "rbd image '{}':\n\tsize {} in {} objects\n\torder {} ({} objects)\n\tsnapshot_count: {}\n\tid: {}\n\
         \tblock_name_prefix: {}\n\tformat: 2\n\tfeatures: {}\n\top_features: \n\tflags: {}\n",
        i.name,
        bytes_h(i.size),
        i.num_objects,
        i.order,
        bytes_h(i.object_size),
        i.snapshot_count,
        i.id,
        i.block_name_prefix,
        v.features.join(", "),
        v.flags.join(", "),
    );
    if let Some(c) = &v.created {
        out += &format!("\tcreate_timestamp: {c}\n");
    }
    if let Some(p) = v.protected {
        out += &format!("\tprotected: {}\n", if p { "True" } else { "False" });
    }
    if let Some(p) = &v.parent {
        out += &format!("\tparent: {}\n\toverlap: {}\n", parent_text(p), bytes_h(p.overlap));
    }
    if v.striped {
        out += &format!("\tstripe unit: {}\n\tstripe count: {}\n", bytes_h(i.stripe_unit), i.stripe_count);
    }
    out
}

async fn resize(ctx: &Ctx) -> Result<()> {
    let size = image_size_opt(ctx)?.ok_or_else(|| Error::einval("rbd: must specify --size <M/G/T>"))?;
    let (_, _io, image) = ctx.open_spec(SnapRule::None, false).await?;
    let result = async {
        if size < image.size() && !ctx.opts.flag("--allow-shrink") {
            return Err(Error::einval(
                "rbd: shrinking an image is only allowed with the --allow-shrink flag",
            ));
        }
        let bar = ctx.bar("Resizing image");
        let r = image.resize(size, true, &|d, t| bar.update(d, t)).await;
        bar.end(r).map_err(failed_why("resize error"))
    }
    .await;
    close(&image, result).await
}

/// Flushes and closes `image` after `result`, keeping the first error.
async fn close<T>(image: &Image, result: Result<T>) -> Result<T> {
    let flushed = if result.is_ok() { image.flush().await } else { Ok(()) };
    let closed = image.close().await;
    let value = result?;
    flushed.map_err(failed("flush failed"))?;
    closed.map_err(failed("close failed"))?;
    Ok(value)
}

async fn rm(ctx: &Ctx) -> Result<()> {
    let spec = ctx.spec(&mut 0, SnapRule::None)?;
    let io = ctx.ioctx(&spec.pool)?;
    let bar = ctx.bar("Removing image");
    let r = cairn_rbd::remove(&io, &spec.image, &|d, t| bar.update(d, t)).await;
    bar.end(r).map_err(|e| match e.errno {
        errno::ENOTEMPTY => Error::new(
            e.errno,
            "rbd: image has snapshots - these must be deleted with 'rbd snap purge' before the image can be removed.",
        ),
        errno::EBUSY if e.message.contains("watchers") => Error::new(
            e.errno,
            "rbd: error: image still has watchers\nThis means the image is still open or the client using it \
             crashed. Try again after closing/unmapping it or waiting 30s for the crashed client to timeout.",
        ),
        errno::EBUSY => Error::new(e.errno, format!("rbd: error: {}", e.message)),
        _ => failed("delete error")(e),
    })
}

async fn rename(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let src = ctx.spec(&mut idx, SnapRule::None)?;
    let dst = ctx.dest_spec(&mut idx, SnapRule::None, src.pool.clone())?;
    if src.pool != dst.pool {
        return Err(Error::einval(format!(
            "rbd: mv/rename across pools not supported\nsource pool: {} dest pool: {}",
            src.pool, dst.pool
        )));
    }
    let io = ctx.ioctx(&src.pool)?;
    cairn_rbd::rename(&io, &src.image, &dst.image).await.map_err(failed_why("rename error"))
}

async fn copy(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let src = ctx.spec(&mut idx, SnapRule::Permitted)?;
    let dst = ctx.dest_spec(&mut idx, SnapRule::None, ctx.default_pool())?;
    let io = ctx.ioctx(&src.pool)?;
    let image = ctx.open(&io, &src, true).await?;
    let dst_io = ctx.ioctx(&dst.pool)?;
    let bar = ctx.bar("Image copy");
    let r = cairn_rbd::copy(&image, &dst_io, &dst.image, &|d, t| bar.update(d, t)).await;
    let r = bar.end(r).map_err(failed_why("copy failed"));
    close(&image, r).await
}

async fn clone(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let parent = ctx.spec(&mut idx, SnapRule::Required)?;
    let child = ctx.dest_spec(&mut idx, SnapRule::None, ctx.default_pool())?;
    let opts = create_options(ctx)?;
    let v2 = ctx.config("rbd default clone format").is_some_and(|v| v.trim() == "2");
    let parent_io = ctx.ioctx(&parent.pool)?;
    let child_io = ctx.ioctx(&child.pool)?;
    let snap = parent.snap.as_deref().unwrap_or_default();
    cairn_rbd::clone(&parent_io, &parent.image, snap, &child_io, &child.image, &opts, v2)
        .await
        .map_err(failed_why("clone error"))
}

async fn children(ctx: &Ctx) -> Result<()> {
    let spec = ctx.spec(&mut 0, SnapRule::Permitted)?;
    let io = ctx.ioctx(&spec.pool)?;
    let image = ctx.open(&io, &Spec { snap: None, ..spec.clone() }, true).await?;
    let kids = match &spec.snap {
        Some(snap) => image.children(snap).await.map_err(|e| match e.errno {
            errno::ENOENT => Error::enoent("rbd: snapshot does not exist."),
            _ => failed("listing children failed")(e),
        })?,
        None => image.all_children().await.map_err(failed("listing children failed"))?,
    };
    match ctx.json {
        Some(_) => ctx.print_json(&J::A(
            kids.iter()
                .map(|(p, i)| obj(vec![("pool", s(p)), ("pool_namespace", s("")), ("image", s(i))]))
                .collect(),
        )),
        None => kids.iter().for_each(|(p, i)| println!("{p}/{i}")),
    }
    Ok(())
}

async fn flatten(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, false).await?;
    let bar = ctx.bar("Image flatten");
    let r = image.flatten(&|d, t| bar.update(d, t)).await;
    let r = bar.end(r).map_err(failed_why("flatten error"));
    close(&image, r).await
}

async fn status(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let watchers = image.watchers().await.map_err(failed("listing watchers failed"))?;
    if ctx.json.is_some() {
        let list = watchers
            .iter()
            .map(|w| {
                let client = w.owner.strip_prefix("client.").and_then(|n| n.parse().ok()).unwrap_or(0);
                obj(vec![("address", s(&w.address)), ("client", J::U(client)), ("cookie", J::U(w.cookie))])
            })
            .collect();
        ctx.print_json(&obj(vec![("watchers", J::A(list))]));
    } else if watchers.is_empty() {
        println!("Watchers: none");
    } else {
        println!("Watchers:");
        for w in &watchers {
            println!("\twatcher={} {} cookie={}", w.address, w.owner, w.cookie);
        }
    }
    Ok(())
}

/// `rbd du`: for each snapshot the bytes of the objects changed since the one before, and
/// for the head those changed since the last snapshot (what Ceph's fast-diff du counts).
async fn du(ctx: &Ctx) -> Result<()> {
    let spec = match ctx.opts.get("--image").or(ctx.opts.pos(0)) {
        Some(_) => Some(ctx.spec(&mut 0, SnapRule::Permitted)?),
        None => None,
    };
    let pool = spec
        .as_ref()
        .map(|s| s.pool.clone())
        .unwrap_or_else(|| ctx.opts.get("--pool").map(str::to_string).unwrap_or_else(|| ctx.default_pool()));
    let io = ctx.ioctx(&pool)?;
    let names = match &spec {
        Some(s) => vec![s.image.clone()],
        None => cairn_rbd::list(&io).await.map_err(failed("du failed"))?,
    };
    let mut rows: Vec<DuRow> = Vec::new();
    for name in names {
        let only = spec.as_ref().and_then(|s| s.snap.clone());
        match du_image(ctx, &io, &name, only.as_deref()).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) if spec.is_none() && e.errno == errno::ENOENT => continue,
            Err(e) => return Err(e),
        }
    }
    let total_prov: u64 = rows.iter().filter(|r| r.snap.is_none()).map(|r| r.provisioned).sum();
    let total_used: u64 = rows.iter().map(|r| r.used).sum();
    if ctx.json.is_some() {
        let images = rows
            .iter()
            .map(|r| {
                let mut f = vec![("name", s(&r.name)), ("id", s(&r.id))];
                if let Some((snap, id)) = &r.snap {
                    f.push(("snapshot", s(snap)));
                    f.push(("snapshot_id", J::U(*id)));
                }
                f.push(("provisioned_size", J::U(r.provisioned)));
                f.push(("used_size", J::U(r.used)));
                obj(f)
            })
            .collect();
        let mut f = vec![("images", J::A(images))];
        if spec.is_none() {
            f.push(("total_provisioned_size", J::U(total_prov)));
            f.push(("total_used_size", J::U(total_used)));
        }
        ctx.print_json(&obj(f));
        return Ok(());
    }
    let mut table = Table::new(&[("NAME", Left, Left), ("PROVISIONED", Left, Right), ("USED", Left, Right)]);
    for r in &rows {
        let name = match &r.snap {
            Some((snap, _)) => format!("{}@{snap}", r.name),
            None => r.name.clone(),
        };
        table.row(vec![name, bytes_h(r.provisioned), bytes_h(r.used)]);
    }
    if rows.len() > 1 {
        table.row(vec!["<TOTAL>".into(), bytes_h(total_prov), bytes_h(total_used)]);
    }
    if !rows.is_empty() {
        print!("{}", table.render());
    }
    Ok(())
}

struct DuRow {
    name: String,
    id: String,
    snap: Option<(String, u64)>,
    provisioned: u64,
    used: u64,
}

async fn du_image(ctx: &Ctx, io: &IoCtx, name: &str, only_snap: Option<&str>) -> Result<Vec<DuRow>> {
    let spec =
        Spec { pool: io.pool_name.clone(), image: name.to_string(), snap: only_snap.map(str::to_string) };
    let head = ctx.open(io, &Spec { snap: None, ..spec.clone() }, true).await?;
    let snaps: Vec<_> = head
        .header()
        .snaps
        .into_iter()
        .filter(|s| s.namespace == cairn_proto::cls::SnapNamespace::User)
        .collect();
    let mut rows = Vec::new();
    let mut prev: Option<String> = None;
    for snap in snaps.iter().map(Some).chain([None]) {
        let wanted = match (only_snap, snap) {
            (Some(o), Some(s)) => s.name == o,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if wanted {
            let at = match snap {
                Some(s) => ctx.open(io, &Spec { snap: Some(s.name.clone()), ..spec.clone() }, true).await?,
                None => head.clone(),
            };
            rows.push(DuRow {
                name: name.to_string(),
                id: head.id().to_string(),
                snap: snap.map(|s| (s.name.clone(), s.id)),
                provisioned: at.size(),
                used: used_since(&at, prev.as_deref()).await.map_err(failed("du failed"))?,
            });
        }
        prev = snap.map(|s| s.name.clone());
    }
    Ok(rows)
}

async fn used_since(image: &Image, from: Option<&str>) -> Result<u64> {
    let mut used = 0;
    image
        .diff_iterate(from, 0, image.size(), false, &mut |_, len, exists| {
            if exists {
                used += len;
            }
            Ok(())
        })
        .await?;
    Ok(used)
}

// ===================================================================================== snapshots

fn user_snaps(image: &Image) -> Vec<cairn_proto::cls::SnapInfo> {
    image
        .header()
        .snaps
        .into_iter()
        .filter(|s| s.namespace == cairn_proto::cls::SnapNamespace::User)
        .collect()
}

fn snap_name(spec: &Spec) -> &str {
    spec.snap.as_deref().unwrap_or_default()
}

async fn snap_create(ctx: &Ctx) -> Result<()> {
    let (spec, _io, image) = ctx.open_spec_at_head(SnapRule::Required, false).await?;
    let bar = ctx.bar("Creating snap");
    let r = image.snap_create(snap_name(&spec)).await.map(drop);
    let r = bar.end(r).map_err(failed("failed to create snapshot"));
    close(&image, r).await
}

async fn snap_ls(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let snaps = user_snaps(&image);
    if ctx.json.is_some() {
        let list = snaps
            .iter()
            .map(|sn| {
                obj(vec![
                    ("id", J::U(sn.id)),
                    ("name", s(&sn.name)),
                    ("size", J::U(sn.size)),
                    ("protected", tf(sn.protected)),
                    ("timestamp", s(ctime(sn.timestamp_secs))),
                ])
            })
            .collect();
        ctx.print_json(&J::A(list));
        return Ok(());
    }
    if snaps.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&[
        ("SNAPID", Left, Right),
        ("NAME", Left, Left),
        ("SIZE", Left, Right),
        ("PROTECTED", Left, Left),
        ("TIMESTAMP", Left, Left),
    ]);
    for sn in &snaps {
        let protected = if sn.protected { "yes" } else { "" };
        table.row(vec![
            sn.id.to_string(),
            sn.name.clone(),
            bytes_h(sn.size),
            protected.into(),
            ctime(sn.timestamp_secs),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn snap_rm(ctx: &Ctx) -> Result<()> {
    let (spec, _io, image) = ctx.open_spec_at_head(SnapRule::Required, false).await?;
    let name = snap_name(&spec);
    let bar = ctx.bar("Removing snap");
    let r = image.snap_remove(name).await;
    let r = bar.end(r).map_err(|e| match e.errno {
        errno::EBUSY => Error::new(e.errno, format!("rbd: snapshot '{name}' is protected from removal.")),
        _ => failed("failed to remove snapshot")(e),
    });
    close(&image, r).await
}

/// Removes every unprotected snapshot. A protected one is reported but, as in Ceph 16, does
/// not fail the command.
async fn snap_purge(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, false).await?;
    let bar = ctx.bar("Removing all snapshots");
    let r = async {
        let snaps = user_snaps(&image);
        let protected: Vec<&str> = snaps.iter().filter(|s| s.protected).map(|s| s.name.as_str()).collect();
        for (i, sn) in snaps.iter().filter(|s| !s.protected).enumerate() {
            image.snap_remove(&sn.name).await.map_err(failed("removing snaps failed"))?;
            bar.update(i as u64 + 1, snaps.len() as u64);
        }
        Ok(protected.iter().map(|p| p.to_string()).collect::<Vec<String>>())
    }
    .await;
    let r = match r {
        Ok(protected) if !protected.is_empty() => {
            let verb = if protected.len() == 1 { "is" } else { "are" };
            eprintln!(
                "rbd: error removing snapshot(s) '{}', which {verb} protected - these must be unprotected with \
                 `rbd snap unprotect`.",
                protected.join(", ")
            );
            bar.fail();
            Ok(())
        }
        other => bar.end(other.map(drop)),
    };
    close(&image, r).await
}

async fn snap_rollback(ctx: &Ctx) -> Result<()> {
    let (spec, _io, image) = ctx.open_spec_at_head(SnapRule::Required, false).await?;
    let bar = ctx.bar("Rolling back to snapshot");
    let r = image.snap_rollback(snap_name(&spec), &|d, t| bar.update(d, t)).await;
    let r = bar.end(r).map_err(failed("rollback failed"));
    close(&image, r).await
}

async fn snap_protect(ctx: &Ctx, protect: bool) -> Result<()> {
    let (spec, _io, image) = ctx.open_spec_at_head(SnapRule::Required, true).await?;
    let r = image.snap_set_protection(snap_name(&spec), protect).await;
    r.map_err(|e| match (protect, e.errno) {
        (true, errno::EBUSY) if e.message.contains("already") => {
            Error::new(e.errno, "rbd: snap is already protected")
        }
        (false, errno::EINVAL) if e.message.contains("already") => {
            Error::new(e.errno, "rbd: snap is already unprotected")
        }
        (true, _) => failed_why("protecting snap failed")(e),
        (false, _) => failed_why("unprotecting snap failed")(e),
    })
}

async fn snap_rename(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let src = ctx.spec(&mut idx, SnapRule::Required)?;
    let dst = ctx.dest_spec(&mut idx, SnapRule::Required, src.pool.clone())?;
    if src.pool != dst.pool || src.image != dst.image {
        return Err(Error::einval("rbd: source and destination image names must be the same"));
    }
    let io = ctx.ioctx(&src.pool)?;
    let image = ctx.open(&io, &Spec { snap: None, ..src.clone() }, true).await?;
    image.snap_rename(snap_name(&src), snap_name(&dst)).await.map_err(failed_why("renaming snap failed"))
}

impl Ctx {
    /// The spec names a snapshot the command acts on: open the image itself.
    async fn open_spec_at_head(&self, rule: SnapRule, read_only: bool) -> Result<(Spec, IoCtx, Image)> {
        let spec = self.spec(&mut 0, rule)?;
        let io = self.ioctx(&spec.pool)?;
        let image = self.open(&io, &Spec { snap: None, ..spec.clone() }, read_only).await?;
        Ok((spec, io, image))
    }
}

// ===================================================================================== trash

async fn trash_mv(ctx: &Ctx) -> Result<()> {
    let spec = ctx.spec(&mut 0, SnapRule::None)?;
    let delay = match ctx.opts.get("--expires-at") {
        Some(t) => parse_time(t).ok_or_else(|| invalid_arg("--expires-at"))?.saturating_sub(now_secs()),
        None => 0,
    };
    let io = ctx.ioctx(&spec.pool)?;
    cairn_rbd::trash_move(&io, &spec.image, delay).await.map(drop).map_err(|e| {
        match e.errno {
        errno::EBUSY => Error::new(
            e.errno,
            "rbd: error: image still has watchers\nThis means the image is still open or the client using it \
             crashed. Try again after closing/unmapping it or waiting 30s for the crashed client to timeout.",
        ),
        _ => failed("deferred delete error")(e),
    }
    })
}

/// `YYYY-MM-DD[ HH:MM[:SS]]` (UTC) as Unix seconds.
fn parse_time(text: &str) -> Option<u64> {
    let (date, time) = text.trim().split_once([' ', 'T']).unwrap_or((text.trim(), "00:00:00"));
    let d: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let t: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss @ ..]) = (d.as_slice(), t.as_slice()) else { return None };
    if !(1..=12).contains(m) || !(1..=31).contains(day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss.first().copied().unwrap_or(0);
    u64::try_from(secs).ok()
}

async fn trash_ls(ctx: &Ctx) -> Result<()> {
    let pool = ctx.opts.get("--pool").map(str::to_string).or_else(|| ctx.opts.pos(0).map(str::to_string));
    let io = ctx.ioctx(&pool.unwrap_or_else(|| ctx.default_pool()))?;
    let items = cairn_rbd::trash_list(&io).await.map_err(failed("trash list failed"))?;
    let now = now_secs();
    let status = |end: u64| {
        if end <= now {
            format!("expired at {}", ctime(end))
        } else {
            format!("protected until {}", ctime(end))
        }
    };
    let long = ctx.opts.flag("--long");
    if ctx.json.is_some() {
        let list = items
            .iter()
            .map(|t| {
                let mut f = vec![("id", s(&t.id)), ("name", s(&t.entry.name))];
                if long {
                    f.push(("source", s(&t.entry.source)));
                    f.push(("deleted_at", s(ctime(t.entry.deletion_secs))));
                    f.push(("status", s(status(t.entry.deferment_end_secs))));
                }
                obj(f)
            })
            .collect();
        ctx.print_json(&J::A(list));
        return Ok(());
    }
    if !long {
        items.iter().for_each(|t| println!("{} {}", t.id, t.entry.name));
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ID", Left, Left),
        ("NAME", Left, Left),
        ("SOURCE", Left, Left),
        ("DELETED_AT", Left, Left),
        ("STATUS", Left, Left),
        ("PARENT", Left, Left),
    ]);
    for t in &items {
        table.row(vec![
            t.id.clone(),
            t.entry.name.clone(),
            t.entry.source.clone(),
            ctime(t.entry.deletion_secs),
            status(t.entry.deferment_end_secs),
            String::new(),
        ]);
    }
    if !items.is_empty() {
        print!("{}", table.render());
    }
    Ok(())
}

/// The image id of a trash command: `[POOL/]ID` or `--image-id`.
fn trash_id(ctx: &Ctx) -> Result<(String, String)> {
    let text = ctx.opts.get("--image-id").or(ctx.opts.pos(0));
    let text = text.ok_or_else(|| Error::einval("rbd: image id was not specified"))?;
    let (pool, id, _) = parse_spec(text)?;
    let pool =
        pool.or_else(|| ctx.opts.get("--pool").map(str::to_string)).unwrap_or_else(|| ctx.default_pool());
    Ok((pool, id))
}

async fn trash_restore(ctx: &Ctx) -> Result<()> {
    let (pool, id) = trash_id(ctx)?;
    let io = ctx.ioctx(&pool)?;
    cairn_rbd::trash_restore(&io, &id, ctx.opts.get("--image")).await.map_err(|e| match e.errno {
        errno::ENOENT => Error::enoent("rbd: error: image does not exist in trash"),
        _ => failed_why("restore error")(e),
    })
}

async fn trash_rm(ctx: &Ctx) -> Result<()> {
    let (pool, id) = trash_id(ctx)?;
    let io = ctx.ioctx(&pool)?;
    let bar = ctx.bar("Removing image");
    let r = cairn_rbd::trash_remove(&io, &id, ctx.opts.flag("--force"), &|d, t| bar.update(d, t)).await;
    bar.end(r).map_err(|e| match e.errno {
        errno::EPERM => Error::new(
            e.errno,
            "Deferment time has not expired, please use --force if you really want to remove the image",
        ),
        errno::ENOENT => Error::enoent("rbd: error: image does not exist in trash"),
        _ => failed_why("remove error")(e),
    })
}

/// Deletes every trashed image whose deferment has ended.
async fn trash_purge(ctx: &Ctx) -> Result<()> {
    let pool = ctx.opts.get("--pool").map(str::to_string).or_else(|| ctx.opts.pos(0).map(str::to_string));
    let io = ctx.ioctx(&pool.unwrap_or_else(|| ctx.default_pool()))?;
    let now = now_secs();
    let expired: Vec<_> = cairn_rbd::trash_list(&io)
        .await
        .map_err(failed("trash list failed"))?
        .into_iter()
        .filter(|t| t.entry.deferment_end_secs <= now)
        .collect();
    let bar = ctx.bar("Removing images");
    let r = async {
        for (i, t) in expired.iter().enumerate() {
            cairn_rbd::trash_remove(&io, &t.id, false, &cairn_rbd::no_progress).await?;
            bar.update(i as u64 + 1, expired.len() as u64);
        }
        Ok(())
    }
    .await;
    bar.end(r).map_err(failed_why("failed to purge trash"))
}

// ===================================================================================== locks, metadata

async fn lock_ls(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let state = image.lock_state(LOCK_NAME).await.map_err(failed("listing locks failed"))?;
    if ctx.json.is_some() {
        let list = state
            .holders
            .iter()
            .map(|h| obj(vec![("id", s(&h.cookie)), ("locker", s(&h.owner)), ("address", s(&h.address))]))
            .collect();
        ctx.print_json(&J::A(list));
        return Ok(());
    }
    if state.holders.is_empty() {
        return Ok(());
    }
    let n = state.holders.len();
    println!(
        "There {} {n} {} lock{} on this image.",
        if n == 1 { "is" } else { "are" },
        if state.exclusive { "exclusive" } else { "shared" },
        if n == 1 { "" } else { "s" }
    );
    if !state.exclusive {
        println!("Lock tag: {}", state.tag);
    }
    let mut table = Table::new(&[("Locker", Left, Left), ("ID", Left, Left), ("Address", Left, Left)]);
    for h in &state.holders {
        table.row(vec![h.owner.clone(), h.cookie.clone(), h.address.clone()]);
    }
    print!("{}", table.render());
    Ok(())
}

async fn lock_add(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let cookie = ctx.opts.pos(1).ok_or_else(|| Error::einval("rbd: lock id was not specified"))?;
    let tag = ctx.opts.get("--shared");
    image.lock_add(cookie, tag).await.map_err(|e| match (e.errno, tag) {
        (errno::EBUSY | errno::EEXIST, Some(_)) => {
            Error::new(e.errno, "rbd: lock is already held by someone else with a different tag")
        }
        (errno::EBUSY | errno::EEXIST, None) => {
            Error::new(e.errno, "rbd: lock is already held by someone else")
        }
        _ => failed("lock failed")(e),
    })
}

async fn lock_rm(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let cookie = ctx.opts.pos(1).ok_or_else(|| Error::einval("rbd: lock id was not specified"))?;
    let locker = ctx.opts.pos(2).ok_or_else(|| Error::einval("rbd: locker was not specified"))?;
    image.lock_remove(cookie, locker).await.map_err(failed("releasing lock failed"))
}

async fn meta_list(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let pairs = image.metadata_list().await.map_err(failed("failed to list metadata of image"))?;
    if ctx.json.is_some() {
        ctx.print_json(&J::O(pairs.into_iter().map(|(k, v)| (k, J::S(v))).collect()));
        return Ok(());
    }
    match pairs.len() {
        0 => println!("There are 0 metadata on this image."),
        1 => println!("There is 1 metadatum on this image:\n"),
        n => println!("There are {n} metadata on this image:\n"),
    }
    if !pairs.is_empty() {
        let mut table = Table::new(&[("Key", Left, Left), ("Value", Left, Left)]);
        for (k, v) in pairs {
            table.row(vec![k, v]);
        }
        print!("{}", table.render());
    }
    Ok(())
}

fn meta_key(ctx: &Ctx) -> Result<&str> {
    ctx.opts.pos(1).ok_or_else(|| Error::einval("rbd: metadata key was not specified"))
}

async fn meta_get(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let value = image.metadata_get(meta_key(ctx)?).await.map_err(|e| {
        Error::new(e.errno, format!("{}\nrbd: getting metadata failed: {}", e.message, e.errno_text()))
    })?;
    println!("{value}");
    Ok(())
}

async fn meta_set(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    let value = ctx.opts.pos(2).ok_or_else(|| Error::einval("rbd: metadata value was not specified"))?;
    image.metadata_set(meta_key(ctx)?, value).await.map_err(failed("setting metadata failed"))
}

async fn meta_remove(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::None, true).await?;
    image.metadata_remove(meta_key(ctx)?).await.map_err(failed("removing metadata failed"))
}

// ===================================================================================== import, export

/// `data` (at image offset `offset`) without its all-zero `sparse`-byte blocks: the runs to
/// write.
fn nonzero_runs(offset: u64, data: &Bytes, sparse: u64) -> Vec<(u64, Bytes)> {
    let block = sparse.max(1) as usize;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for start in (0..data.len()).step_by(block) {
        let end = (start + block).min(data.len());
        if data[start..end].iter().all(|b| *b == 0) {
            continue;
        }
        match runs.last_mut() {
            Some((_, e)) if *e == start => *e = end,
            _ => runs.push((start, end)),
        }
    }
    runs.into_iter().map(|(s, e)| (offset + s as u64, data.slice(s..e))).collect()
}

/// The data ranges of a file of `size` bytes (`SEEK_DATA`/`SEEK_HOLE`), or the whole file
/// where the file system cannot tell.
fn data_regions(file: &std::fs::File, size: u64) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let Ok(at) = libc::off_t::try_from(pos) else { return vec![(0, size)] };
        // SAFETY: lseek on a descriptor we own; it only moves the file offset.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // No data past `pos`.
            }
            return vec![(0, size)];
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return vec![(0, size)];
        }
        let (start, end) = (data as u64, (hole as u64).min(size));
        if start >= end {
            break;
        }
        out.push((start, end));
        pos = end;
    }
    out
}

/// `[start, end)` cut at multiples of `chunk`.
fn chunks_of(start: u64, end: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut pos = start;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let stop = ((pos / chunk + 1) * chunk).min(end);
        let piece = (pos, stop - pos);
        pos = stop;
        Some(piece)
    })
}

/// Writes spawned during an import, bounded in count and bytes.
struct Writes {
    set: tokio::task::JoinSet<Result<u64>>,
    bytes: u64,
}

impl Writes {
    fn new() -> Self {
        Writes { set: tokio::task::JoinSet::new(), bytes: 0 }
    }

    async fn push(&mut self, image: &Image, offset: u64, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        while !self.set.is_empty()
            && (self.set.len() >= 2 * COPY_CHUNKS_IN_FLIGHT || self.bytes + len > COPY_BYTES_IN_FLIGHT)
        {
            self.complete_one().await?;
        }
        let image = image.clone();
        self.set.spawn(async move { image.write(offset, data).await.map(|_| len) });
        self.bytes += len;
        Ok(())
    }

    async fn complete_one(&mut self) -> Result<()> {
        if let Some(done) = self.set.join_next().await {
            let len = done.map_err(|e| Error::eio(format!("write task failed: {e}")))??;
            self.bytes -= len;
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<()> {
        while !self.set.is_empty() {
            self.complete_one().await?;
        }
        Ok(())
    }
}

enum ImportSource {
    /// A file of known size that can be read at any offset.
    File(std::fs::File, u64),
    Stream(Box<dyn Read + Send>),
}

fn open_import_source(path: &str) -> Result<ImportSource> {
    use std::os::unix::fs::FileTypeExt;
    if path == "-" {
        return Ok(ImportSource::Stream(Box::new(std::io::stdin())));
    }
    let cant = |e: std::io::Error| {
        let e = Error::from(e);
        Error::new(e.errno, format!("rbd: error opening {path}\nrbd: import failed: {}", e.errno_text()))
    };
    let mut file = std::fs::File::open(path).map_err(cant)?;
    let kind = file.metadata().map_err(cant)?.file_type();
    if kind.is_file() {
        let size = file.metadata().map_err(cant)?.len();
        Ok(ImportSource::File(file, size))
    } else if kind.is_block_device() {
        let size = file.seek(SeekFrom::End(0)).map_err(cant)?;
        Ok(ImportSource::File(file, size))
    } else {
        Ok(ImportSource::Stream(Box::new(file)))
    }
}

async fn import(ctx: &Ctx) -> Result<()> {
    let path = ctx
        .opts
        .get("--path")
        .or(ctx.opts.pos(0))
        .ok_or_else(|| Error::einval("rbd: path was not specified"))?;
    let name = ctx.opts.get("--dest").or(ctx.opts.get("--image")).or(ctx.opts.pos(1)).map(str::to_string);
    let name = name.or_else(|| {
        (path != "-")
            .then(|| std::path::Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten()
    });
    let name = name.ok_or_else(|| Error::einval("rbd: destination image name was not specified"))?;
    let (pool, image_name, snap) = parse_spec(&name)?;
    if snap.is_some() {
        return Err(Error::einval(
            "rbd: destination snapshot name specified for a command that doesn't use it",
        ));
    }
    let pool = pool
        .or_else(|| ctx.opts.get("--dest-pool").map(str::to_string))
        .or_else(|| ctx.opts.get("--pool").map(str::to_string))
        .unwrap_or_else(|| ctx.default_pool());
    let sparse = size_opt(ctx, "--sparse-size")?.unwrap_or(SPARSE_BYTES);
    if ctx.opts.get("--export-format").is_some_and(|f| f != "1") {
        return Err(Error::new(errno::EOPNOTSUPP, "rbd: --export-format 2 is not supported by Cairn"));
    }
    let opts = create_options(ctx)?;
    let source = open_import_source(path)?;
    let io = ctx.ioctx(&pool)?;
    let size = match &source {
        ImportSource::File(_, size) => *size,
        ImportSource::Stream(_) => 0,
    };
    cairn_rbd::create(&io, &image_name, size, &opts).await.map_err(|e| {
        Error::new(e.errno, format!("rbd: image creation failed\nrbd: import failed: {}", e.errno_text()))
    })?;
    let bar = ctx.bar("Importing image");
    let written = async {
        let image = Image::open(&io, &image_name, None, false).await?;
        let r = match source {
            ImportSource::File(file, size) => import_file(&image, &file, size, sparse, &bar).await,
            ImportSource::Stream(input) => import_stream(&image, input, sparse).await,
        };
        close(&image, r).await
    }
    .await;
    if let Err(e) = bar.end(written) {
        let _ = cairn_rbd::remove(&io, &image_name, &cairn_rbd::no_progress).await;
        return Err(failed("import failed")(e));
    }
    Ok(())
}

async fn import_file(image: &Image, file: &std::fs::File, size: u64, sparse: u64, bar: &Bar) -> Result<()> {
    let chunk = image.layout().object_size.max(sparse);
    let mut writes = Writes::new();
    for (start, end) in data_regions(file, size) {
        for (offset, len) in chunks_of(start, end, chunk) {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)?;
            for (at, run) in nonzero_runs(offset, &Bytes::from(buf), sparse) {
                writes.push(image, at, run).await?;
            }
            bar.update(offset + len, size);
        }
    }
    writes.drain().await
}

/// Imports from a pipe: the image grows as data arrives and is cut to the exact size at the end.
async fn import_stream(image: &Image, mut input: Box<dyn Read + Send>, sparse: u64) -> Result<()> {
    let chunk = image.layout().object_size.max(sparse) as usize;
    let mut writes = Writes::new();
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; chunk];
        let mut filled = 0;
        while filled < chunk {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        let end = total + filled as u64;
        if end > image.size() {
            image
                .resize(image.size() + STREAM_GROW_BYTES.max(filled as u64), false, &cairn_rbd::no_progress)
                .await?;
        }
        for (at, run) in nonzero_runs(total, &Bytes::from(buf), sparse) {
            writes.push(image, at, run).await?;
        }
        total = end;
        if filled < chunk {
            break;
        }
    }
    writes.drain().await?;
    if image.size() != total {
        image.resize(total, true, &cairn_rbd::no_progress).await?;
    }
    Ok(())
}

/// Object reads an export keeps in flight: about [`COPY_BYTES_IN_FLIGHT`] worth.
fn reads_in_flight(image: &Image) -> usize {
    let per = (COPY_BYTES_IN_FLIGHT / image.layout().object_size.max(1)) as usize;
    per.clamp(1, COPY_CHUNKS_IN_FLIGHT)
}

async fn export(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let spec = ctx.spec(&mut idx, SnapRule::Permitted)?;
    let path = ctx
        .opts
        .get("--path")
        .or(ctx.opts.pos(idx))
        .ok_or_else(|| Error::einval("rbd: path was not specified"))?;
    if ctx.opts.get("--export-format").is_some_and(|f| f != "1") {
        return Err(Error::new(errno::EOPNOTSUPP, "rbd: --export-format 2 is not supported by Cairn"));
    }
    let io = ctx.ioctx(&spec.pool)?;
    let image = ctx.open(&io, &spec, true).await?;
    let bar = ctx.bar("Exporting image");
    let r = if path == "-" {
        export_stream(&image, &mut std::io::stdout().lock(), &bar).await
    } else {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => {
                let r = export_file(&image, &file, &bar).await;
                if r.is_err() {
                    let _ = std::fs::remove_file(path);
                }
                r
            }
            Err(e) => Err(e.into()),
        }
    };
    let r = bar.end(r).map_err(failed("export error"));
    close(&image, r).await
}

/// Into a new regular file: only data is written, holes stay holes.
async fn export_file(image: &Image, file: &std::fs::File, bar: &Bar) -> Result<()> {
    let size = image.size();
    let extents: Vec<Extent> =
        diff::changed_extents(image, None).await?.into_iter().filter(|e| e.exists).collect();
    let mut reads = futures::stream::iter(extents)
        .map(|e| async move { Ok::<_, Error>((e, image.read(e.offset, e.len).await?)) })
        .buffered(reads_in_flight(image));
    while let Some((e, data)) = reads.try_next().await? {
        for (at, run) in nonzero_runs(e.offset, &data, SPARSE_BYTES) {
            file.write_all_at(&run, at)?;
        }
        bar.update(e.offset + e.len, size);
    }
    file.set_len(size)?;
    Ok(())
}

/// Into a stream (stdout): every byte, holes as zeros.
async fn export_stream(image: &Image, out: &mut dyn Write, bar: &Bar) -> Result<()> {
    let size = image.size();
    let extents: Vec<Extent> =
        diff::changed_extents(image, None).await?.into_iter().filter(|e| e.exists).collect();
    let zeros = vec![0u8; 1 << 20];
    let write_zeros = |out: &mut dyn Write, mut n: u64| -> Result<()> {
        while n > 0 {
            let k = n.min(zeros.len() as u64);
            out.write_all(&zeros[..k as usize])?;
            n -= k;
        }
        Ok(())
    };
    let mut reads = futures::stream::iter(extents)
        .map(|e| async move { Ok::<_, Error>((e, image.read(e.offset, e.len).await?)) })
        .buffered(reads_in_flight(image));
    let mut pos = 0u64;
    while let Some((e, data)) = reads.try_next().await? {
        write_zeros(out, e.offset - pos)?;
        out.write_all(&data)?;
        pos = e.offset + e.len;
        bar.update(pos, size);
    }
    write_zeros(out, size - pos)?;
    out.flush()?;
    Ok(())
}

async fn export_diff(ctx: &Ctx) -> Result<()> {
    let mut idx = 0;
    let spec = ctx.spec(&mut idx, SnapRule::Permitted)?;
    let path = ctx
        .opts
        .get("--path")
        .or(ctx.opts.pos(idx))
        .ok_or_else(|| Error::einval("rbd: path was not specified"))?;
    let from = ctx.opts.get("--from-snap");
    let io = ctx.ioctx(&spec.pool)?;
    let image = ctx.open(&io, &spec, true).await?;
    let bar = ctx.bar("Exporting image");
    let r: Result<()> = async {
        let out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if path == "-" {
            Box::new(tokio::io::stdout())
        } else {
            let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
            Box::new(tokio::fs::File::from_std(file))
        };
        let out = tokio::io::BufWriter::with_capacity(1 << 20, out);
        let (mut out, _) = diff::export_diff(&image, from, out, &|d, t| bar.update(d, t)).await?;
        out.shutdown().await?;
        Ok(())
    }
    .await;
    if r.as_ref().is_err_and(|e| e.errno != errno::EEXIST) && path != "-" {
        let _ = std::fs::remove_file(path);
    }
    let r = bar.end(r).map_err(failed("export-diff error"));
    close(&image, r).await
}

async fn import_diff(ctx: &Ctx) -> Result<()> {
    let path = ctx
        .opts
        .get("--path")
        .or(ctx.opts.pos(0))
        .ok_or_else(|| Error::einval("rbd: path was not specified"))?;
    let spec = ctx.spec(&mut 1, SnapRule::None)?;
    let io = ctx.ioctx(&spec.pool)?;
    let image = ctx.open(&io, &spec, false).await?;
    let bar = ctx.bar("Importing image diff");
    let r = async {
        let file = if path == "-" {
            spool_stdin()?
        } else {
            std::fs::File::open(path).map_err(|e| {
                let e = Error::from(e);
                Error::new(e.errno, format!("rbd: error opening {path}"))
            })?
        };
        let mut input = tokio::fs::File::from_std(file);
        diff::apply_diff(&image, &mut input, &|d, t| bar.update(d, t)).await.map(drop)
    }
    .await;
    let r = bar.end(r).map_err(|e| {
        let first = if e.message.is_empty() { String::new() } else { format!("{}\n", e.message) };
        Error::new(e.errno, format!("{first}rbd: import-diff failed: {}", e.errno_text()))
    });
    close(&image, r).await
}

/// Copies stdin into an unlinked temporary file, so the diff can be checked whole before any
/// of it is applied.
fn spool_stdin() -> Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let path =
        dir.join(format!(".cairn-rbd-import-diff-{}-{:016x}", std::process::id(), rand::random::<u64>()));
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let _ = std::fs::remove_file(&path);
    std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

async fn diff_cmd(ctx: &Ctx) -> Result<()> {
    let (_, _io, image) = ctx.open_spec(SnapRule::Permitted, true).await?;
    let from = ctx.opts.get("--from-snap");
    let extents = diff::changed_extents(&image, from).await.map_err(failed("diff error"))?;
    if ctx.json.is_some() {
        let list = extents
            .iter()
            .map(|e| obj(vec![("offset", J::U(e.offset)), ("length", J::U(e.len)), ("exists", tf(e.exists))]))
            .collect();
        ctx.print_json(&J::A(list));
        return Ok(());
    }
    let mut table = Table::new(&[("Offset", Left, Left), ("Length", Left, Left), ("Type", Left, Left)]);
    for e in &extents {
        table.row(vec![
            e.offset.to_string(),
            e.len.to_string(),
            if e.exists { "data" } else { "zero" }.into(),
        ]);
    }
    if !extents.is_empty() {
        print!("{}", table.render());
    }
    Ok(())
}

// ===================================================================================== bench

struct BenchPlan {
    write: bool,
    io_size: u64,
    threads: u64,
    total: u64,
    random: bool,
}

fn bench_plan(ctx: &Ctx) -> Result<BenchPlan> {
    let write = match ctx.opts.get("--io-type") {
        Some("write") => true,
        Some("read") => false,
        Some(_) => return Err(invalid_arg("--io-type")),
        None => return Err(Error::einval("rbd: --io-type must be specified.")),
    };
    let io_size = size_opt(ctx, "--io-size")?.unwrap_or(4096);
    if io_size == 0 {
        return Err(Error::einval("rbd: --io-size should be greater than zero."));
    }
    if io_size > MAX_BENCH_IO_BYTES {
        return Err(invalid_arg("--io-size"));
    }
    let threads = u64_opt(ctx, "--io-threads")?.unwrap_or(16);
    if threads == 0 || threads > MAX_BENCH_THREADS {
        return Err(invalid_arg("--io-threads"));
    }
    let random = match ctx.opts.get("--io-pattern") {
        None | Some("seq") => false,
        Some("rand") => true,
        Some(_) => return Err(invalid_arg("--io-pattern")),
    };
    let total = size_opt(ctx, "--io-total")?.unwrap_or(1 << 30);
    Ok(BenchPlan { write, io_size, threads, total, random })
}

async fn bench(ctx: &Ctx) -> Result<()> {
    let plan = bench_plan(ctx)?;
    let rule = if plan.write { SnapRule::None } else { SnapRule::Permitted };
    let (_, _io, image) = ctx.open_spec(rule, !plan.write).await?;
    let r = async {
        let size = image.size();
        if plan.io_size > size {
            return Err(Error::einval(format!(
                "rbd: io-size {} larger than image size {}\nrbd: bench failed: (22) Invalid argument",
                bytes_h(plan.io_size),
                bytes_h(size)
            )));
        }
        println!(
            "bench  type {} io_size {} io_threads {} bytes {} pattern {}",
            if plan.write { "write" } else { "read" },
            plan.io_size,
            plan.threads,
            plan.total,
            if plan.random { "random" } else { "sequential" }
        );
        println!("  SEC       OPS   OPS/SEC   BYTES/SEC");
        run_bench(&image, &plan, size).await.map_err(failed("bench failed"))
    }
    .await;
    close(&image, r).await
}

async fn run_bench(image: &Image, plan: &BenchPlan, size: u64) -> Result<()> {
    use rand::Rng;
    let blocks = size / plan.io_size;
    let mut offsets: Vec<u64> =
        (0..plan.threads).map(|i| (blocks * i / plan.threads) * plan.io_size).collect();
    let fill = rand::thread_rng().gen_range(1..=255u8);
    let data = Bytes::from(vec![fill; plan.io_size as usize]);
    let mut set: tokio::task::JoinSet<Result<()>> = tokio::task::JoinSet::new();
    let start = Instant::now();
    let (mut issued, mut ops, mut next) = (0u64, 0u64, 0usize);
    let mut tick = Tick { window: VecDeque::new(), last: Duration::ZERO, ops: 0 };
    while issued < plan.total || !set.is_empty() {
        while issued < plan.total && (set.len() as u64) < plan.threads {
            let offset = if plan.random {
                rand::thread_rng().gen_range(0..blocks) * plan.io_size
            } else {
                let o = offsets[next];
                offsets[next] = if o + 2 * plan.io_size > size { 0 } else { o + plan.io_size };
                next = (next + 1) % offsets.len();
                o
            };
            let (image, data, len) = (image.clone(), data.clone(), plan.io_size);
            set.spawn(async move {
                if image.read_only() {
                    image.read(offset, len).await.map(drop)
                } else {
                    image.write(offset, data).await
                }
            });
            issued += plan.io_size;
        }
        if let Some(done) = set.join_next().await {
            done.map_err(|e| Error::eio(format!("bench task failed: {e}")))??;
            ops += 1;
            tick.ops += 1;
        }
        tick.maybe_print(start.elapsed(), ops, plan.io_size);
    }
    image.flush().await?;
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "elapsed: {}   ops: {}   ops/sec: {}   bytes/sec: {}/s",
        elapsed as u64,
        ops,
        g6(ops as f64 / elapsed),
        bytes_h(((ops * plan.io_size) as f64 / elapsed) as u64)
    );
    Ok(())
}

/// `rbd bench`'s per-second lines: ops done so far and the rate over the last
/// [`BENCH_WINDOW`] seconds.
struct Tick {
    /// `(seconds, ops)` of recent intervals.
    window: VecDeque<(f64, u64)>,
    last: Duration,
    ops: u64,
}

impl Tick {
    fn maybe_print(&mut self, elapsed: Duration, total_ops: u64, io_size: u64) {
        if elapsed.as_secs() == self.last.as_secs() {
            return;
        }
        self.window.push_back(((elapsed - self.last).as_secs_f64(), self.ops));
        if self.window.len() > BENCH_WINDOW {
            self.window.pop_front();
        }
        let secs: f64 = self.window.iter().map(|w| w.0).sum::<f64>().max(1e-9);
        let ops: u64 = self.window.iter().map(|w| w.1).sum();
        let rate = ops as f64 / secs;
        println!(
            "{:>5}{:>10}{:>10}{:>10}/s",
            elapsed.as_secs(),
            total_ops,
            g6(rate),
            bytes_h((rate * io_size as f64) as u64)
        );
        self.last = elapsed;
        self.ops = 0;
    }
}

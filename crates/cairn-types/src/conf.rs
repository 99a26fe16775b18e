//! Ceph-compatible configuration files (`ceph.conf`, `cairn.conf`).
//!
//! Syntax follows Ceph's `ConfUtils` (Pacific): `[section]` headers, `key = value` lines, `#` and
//! `;` comments (whole-line or after a value), `"double"` or `'single'` quoted values, backslash
//! escapes (`\x` stands for `x`), and a trailing `\` that joins the next line. Keys are compared
//! after [`normalize_key`], so `mon host`, `mon_host` and `mon-host` are one key.
//!
//! A lookup for an entity such as `client.cinder` searches `[client.cinder]`, `[client]`, then
//! `[global]`, and expands `$cluster`, `$type`, `$id`, `$name`, `$host`, `$pid`, `$cctid`,
//! `${var}` and references to other options (`$run_dir`) the way `ceph-conf --lookup` does.
//! Where Cairn knowingly differs from Ceph 16 is listed on [`Conf`].

use crate::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

/// Largest config file accepted. Ceph allows 1 GiB; a real config is a few KiB, so anything
/// near this is a mistake (a log or an image passed with `-c`).
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Longest logical line, continuations included.
pub const MAX_LINE_BYTES: usize = 64 << 10;
/// Longest section name or key that [`Conf::set`] accepts.
pub const MAX_NAME_BYTES: usize = 1024;
/// Deepest chain of option references (`$a` → `$b` → …) followed in one lookup.
pub const MAX_EXPANSION_DEPTH: usize = 16;
/// Most option references expanded in one lookup; bounds `a = $b$b`, `b = $c$c`, … blow-ups.
pub const MAX_SUBSTITUTIONS: usize = 256;
/// Longest value a lookup returns; a reference that would grow it further stays unexpanded.
pub const MAX_EXPANDED_BYTES: usize = 64 << 10;
/// Cluster name (`$cluster`) when neither the caller nor the file name gives one, as in Ceph.
pub const DEFAULT_CLUSTER: &str = "ceph";
/// Port assumed for a monitor address written without one (msgr2's port, which Cairn uses).
pub const DEFAULT_MON_PORT: u16 = 3300;
/// Port assumed for a `v1:` monitor address written without one (Ceph's legacy port).
pub const DEFAULT_MON_PORT_V1: u16 = 6789;
/// Most monitor addresses accepted in one `mon host` value.
pub const MAX_MON_ADDRS: usize = 64;
/// Environment variable naming Cairn's config file (Ceph's is `CEPH_CONF`).
pub const CONF_ENV: &str = "CAIRN_CONF";
/// Where [`locate`] looks when neither `-c` nor [`CONF_ENV`] names a file.
pub const DEFAULT_CONF_PATHS: [&str; 2] = ["./cairn.conf", "/etc/cairn/cairn.conf"];

/// One `key = value` line. `key` keeps the spelling last written; `norm` is what lookups compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    norm: String,
    value: String,
}

/// A `[name]` section: its entries in file order, one per normalized key (the last one wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    name: String,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Section {
    fn new(name: String) -> Self {
        Section { name, entries: Vec::new(), index: HashMap::new() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw (unexpanded) value of `key` in this section alone.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(&normalize_key(key))
    }

    /// `(key, raw value)` pairs in file order, keys as last written.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()))
    }

    fn find(&self, norm: &str) -> Option<&str> {
        self.index.get(norm).map(|&i| self.entries[i].value.as_str())
    }

    fn insert(&mut self, key: &str, value: String) {
        let norm = normalize_key(key);
        match self.index.get(&norm) {
            Some(&i) => {
                self.entries[i].key = key.to_string();
                self.entries[i].value = value;
            }
            None => {
                self.index.insert(norm.clone(), self.entries.len());
                self.entries.push(Entry { key: key.to_string(), norm, value });
            }
        }
    }

    fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.index.remove(&normalize_key(key))?;
        let entry = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(entry.value)
    }
}

/// A parsed configuration file: sections in file order, plus the cluster name that `$cluster`
/// expands to and defaults that `$option` references fall back on.
///
/// Matches Ceph 16 (checked against `ceph-conf --lookup`): syntax and escapes, trimming, comments,
/// last duplicate wins, repeated sections merge, case-sensitive keys, section names taken
/// verbatim (`[ global ]` is not `[global]`), quoted values trimmed after unquoting, lookup order,
/// metavariables (`$host` honours a `host =` option, `$pid` honours `$PID`), `$option`
/// references and `$cluster` taken from the file name (`cairn.conf` → `cairn`).
///
/// Knowingly different:
/// - `-` and runs of separators are equivalent in keys (`mon-host`, `mon__host`); Ceph only folds
///   whitespace into `_`, so `mon-host` is a different (unknown) key there.
/// - A last line without a newline, indentation before `[section]`, `#`/`;` inside quotes,
///   continuations inside quotes and non-ASCII UTF-8 are accepted (Ceph rejects or, for UTF-8,
///   aborts); NUL bytes are rejected.
/// - `$cctid` is the process id (Ceph prints a pointer); `$data_dir` maps to `osd_data`,
///   `mon_data`, `mgr_data` or `mds_data` by entity type; `$home` appends `$HOME` (Ceph replaces
///   everything before it); an unterminated `${var` stays literal (Ceph drops the rest).
/// - A reference loop leaves the innermost `$option` literal; Ceph returns `$option` as the whole
///   value of the option that closed the loop.
/// - `$option` only falls back on defaults registered with [`Conf::set_default`] (built in:
///   `run_dir = /var/run/$cluster`), not Ceph's full option table.
/// - [`Conf::get_bool`] also takes `yes`/`no`; Ceph 16 rejects them (the option keeps its
///   default, so `rbd cache = no` leaves the cache on there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    sections: Vec<Section>,
    index: HashMap<String, usize>,
    defaults: Section,
    cluster: String,
}

impl Default for Conf {
    fn default() -> Self {
        let mut defaults = Section::new(String::new());
        defaults.insert("run_dir", "/var/run/$cluster".to_string());
        Conf { sections: Vec::new(), index: HashMap::new(), defaults, cluster: DEFAULT_CLUSTER.to_string() }
    }
}

impl Conf {
    /// An empty configuration with cluster name [`DEFAULT_CLUSTER`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses configuration text; EINVAL with `line N: reason` on malformed input.
    pub fn parse(text: &str) -> Result<Conf> {
        Parser::new(text)?.run()
    }

    /// Parses raw file contents; non-UTF-8 bytes are EINVAL naming the line.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Conf> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(too_big(bytes.len()));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Conf::parse(text),
            Err(e) => Err(Error::einval(format!("line {}: invalid UTF-8", line_of(bytes, e.valid_up_to())))),
        }
    }

    /// Reads and parses a file. Missing file: ENOENT naming the path. The cluster name comes
    /// from the file name as in Ceph (`/etc/ceph/prod.conf` → `prod`), else [`DEFAULT_CLUSTER`].
    pub fn load(path: &Path) -> Result<Conf> {
        let io_err = |e: std::io::Error| {
            let e = Error::from(e);
            let text = Error::strerror(e.errno);
            Error::new(e.errno, format!("cannot read config file {}: {text}", path.display()))
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io_err)?;
        let mut conf = Conf::parse_bytes(&bytes)
            .map_err(|e| Error::new(e.errno, format!("{}: {}", path.display(), e.message)))?;
        conf.cluster = cluster_from_path(path).unwrap_or(DEFAULT_CLUSTER).to_string();
        Ok(conf)
    }

    /// What `$cluster` expands to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Sets what `$cluster` expands to (Ceph's `--cluster`).
    pub fn set_cluster(&mut self, cluster: &str) {
        self.cluster = cluster.to_string();
    }

    /// Registers the value an `$option` reference uses when no section defines `key`.
    /// Defaults are not returned by [`Conf::get`] and not written by `to_string`.
    pub fn set_default(&mut self, key: &str, value: &str) {
        self.defaults.insert(key.trim(), value.trim().to_string());
    }

    /// The value of `key` for `entity` (`client.cinder`, `osd.3`, `mon.a`), searched in
    /// [`search_sections`] order, with metavariables and `$option` references expanded.
    pub fn get(&self, entity: &str, key: &str) -> Option<String> {
        let entity = EntityName::parse(entity);
        let norm = normalize_key(key);
        let raw = self.lookup(&entity, &norm)?;
        let mut expander = Expander { conf: self, entity, stack: vec![norm], substitutions: 0 };
        Some(expander.expand(raw))
    }

    /// Like [`Conf::get`] but without expansion.
    pub fn get_raw(&self, entity: &str, key: &str) -> Option<&str> {
        self.lookup(&EntityName::parse(entity), &normalize_key(key))
    }

    /// A boolean as Ceph reads one: `true`/`false` (any case) or an integer (non-zero is true);
    /// Cairn also takes `yes`/`no`. EINVAL names the key and value.
    pub fn get_bool(&self, entity: &str, key: &str) -> Result<Option<bool>> {
        self.get_parsed(entity, key, "a boolean (true/false/yes/no/1/0)", parse_bool)
    }

    /// An unsigned integer as Ceph reads one (`strict_si_cast`): decimal digits, optionally
    /// followed by one of `K M G T P E` meaning powers of 1000.
    pub fn get_u64(&self, entity: &str, key: &str) -> Result<Option<u64>> {
        self.get_parsed(entity, key, "an unsigned integer", parse_si_u64)
    }

    /// A floating-point number.
    pub fn get_f64(&self, entity: &str, key: &str) -> Result<Option<f64>> {
        self.get_parsed(entity, key, "a number", |v| v.parse::<f64>().ok())
    }

    /// A size in bytes as Ceph reads size options (`strict_iecstrtoll`): digits, optionally
    /// followed by `B`, or `K M G T P E` alone or with `i` or `B` after it, all binary
    /// multiples (`32M` = `32Mi` = 33554432).
    pub fn get_bytes(&self, entity: &str, key: &str) -> Result<Option<u64>> {
        self.get_parsed(entity, key, "a size in bytes (e.g. 4096, 4K, 32M, 1Gi)", parse_iec_bytes)
    }

    fn get_parsed<T>(
        &self,
        entity: &str,
        key: &str,
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(value) = self.get(entity, key) else {
            return Ok(None);
        };
        match parse(&value) {
            Some(v) => Ok(Some(v)),
            None => Err(Error::einval(format!(
                "config option '{key}' for {entity} is '{value}', which is not {what}"
            ))),
        }
    }

    /// Sets `key = value` in `[section]`, creating the section at the end if needed and
    /// replacing an existing spelling of the key. Keys and values are trimmed, as parsing
    /// would; EINVAL for what a config file cannot hold (line breaks, NUL, `=` `[` `#` `;` `\`
    /// in a key, empty names, over-long text).
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        check_section_name(section)?;
        let key = key.trim_matches(is_ceph_space);
        check_key(key)?;
        let value = value.trim_matches(is_ceph_space);
        check_value(key, value)?;
        let i = self.section_index(section);
        self.sections[i].insert(key, value.to_string());
        Ok(())
    }

    /// Removes `key` from `[section]`, returning its raw value.
    pub fn remove(&mut self, section: &str, key: &str) -> Option<String> {
        let i = *self.index.get(section)?;
        self.sections[i].remove(key)
    }

    /// All sections in file order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section named exactly `name`.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.index.get(name).map(|&i| &self.sections[i])
    }

    fn section_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.index.insert(name.to_string(), self.sections.len());
        self.sections.push(Section::new(name.to_string()));
        self.sections.len() - 1
    }

    fn lookup(&self, entity: &EntityName<'_>, norm: &str) -> Option<&str> {
        entity.sections().iter().find_map(|name| self.section(name)?.find(norm))
    }
}

/// Writes the configuration back in a form [`Conf::parse`] reads to the same sections and
/// values (comments and blank lines are not kept).
impl fmt::Display for Conf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, section) in self.sections.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "[{}]", escape(&section.name, |_, c| matches!(c, ']' | '#' | ';' | '\\')))?;
            for e in &section.entries {
                let value = escape(&e.value, |at, c| {
                    matches!(c, '#' | ';' | '\\') || (at == 0 && matches!(c, '"' | '\''))
                });
                writeln!(f, "{} = {value}", e.key)?;
            }
        }
        Ok(())
    }
}

fn escape(text: &str, needs: impl Fn(usize, char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (at, c) in text.char_indices() {
        if needs(at, c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Canonical form of a key: surrounding whitespace trimmed, and every run of whitespace, `_`
/// and `-` written as one `_`. Case is kept (Ceph keys are case-sensitive).
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut separator = false;
    for c in key.trim_matches(is_ceph_space).chars() {
        if is_ceph_space(c) || c == '_' || c == '-' {
            separator = true;
        } else {
            if separator {
                out.push('_');
                separator = false;
            }
            out.push(c);
        }
    }
    if separator {
        out.push('_');
    }
    out
}

/// The sections a lookup for `entity` searches, most specific first: `client.cinder` →
/// `client.cinder`, `client`, `global` (Ceph's `get_my_sections`).
pub fn search_sections(entity: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(3);
    for name in EntityName::parse(entity).sections() {
        if !out.iter().any(|s| s == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// C's `isspace` in the "C" locale, which is what Ceph trims with.
fn is_ceph_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn too_big(len: usize) -> Error {
    Error::einval(format!("config is {len} bytes, the maximum is {MAX_FILE_BYTES}"))
}

/// Ceph names the cluster after the config file: the base name up to `.conf`.
fn cluster_from_path(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let end = name.find(".conf")?;
    (end > 0).then(|| &name[..end])
}

fn check_section_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::einval("empty section name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::einval(format!("section name longer than {MAX_NAME_BYTES} bytes")));
    }
    if name.contains(['\n', '\r', '\0']) {
        return Err(Error::einval(format!("section name {name:?} contains a line break or NUL")));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::einval("empty config key"));
    }
    if key.len() > MAX_NAME_BYTES {
        return Err(Error::einval(format!("config key longer than {MAX_NAME_BYTES} bytes")));
    }
    if key.contains(['=', '[', '#', ';', '\\', '\n', '\r', '\0']) {
        return Err(Error::einval(format!("config key {key:?} contains one of = [ # ; \\ or a line break")));
    }
    Ok(())
}

fn check_value(key: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LINE_BYTES {
        return Err(Error::einval(format!(
            "value of config key '{key}' is longer than {MAX_LINE_BYTES} bytes"
        )));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(Error::einval(format!("value of config key '{key}' contains a line break or NUL")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// A hand-written equivalent of Ceph's Boost.Spirit grammar, one logical line at a time.
/// Every syntax character is ASCII, so the parser walks bytes and never splits a UTF-8 sequence.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self> {
        if text.len() > MAX_FILE_BYTES {
            return Err(too_big(text.len()));
        }
        if let Some(at) = text.find('\0') {
            return Err(Error::einval(format!("line {}: NUL byte", line_of(text.as_bytes(), at))));
        }
        Ok(Parser { text, bytes: text.as_bytes(), pos: 0, line: 1 })
    }

    fn run(mut self) -> Result<Conf> {
        let mut conf = Conf::new();
        let mut current: Option<usize> = None;
        // Ceph accepts a file that is one `key = value` line and nothing else, as [global];
        // any other key before the first header is an error.
        let mut orphan: Option<(usize, String, String)> = None;
        let outside = |line: usize, key: &str| {
            Error::einval(format!("line {line}: key '{key}' is outside of any [section]"))
        };
        loop {
            let (start, line) = (self.pos, self.line);
            self.skip_blanks();
            match self.peek() {
                None => break,
                Some(b'\n' | b'\r') => {}
                Some(b'#' | b';') => self.skip_comment(),
                Some(b'[') => {
                    if let Some((line, key, _)) = &orphan {
                        return Err(outside(*line, key));
                    }
                    let name = self.heading()?;
                    current = Some(conf.section_index(&name));
                    self.end_of_line("section header")?;
                }
                Some(_) => {
                    let (key, value) = self.key_value()?;
                    match (current, &orphan) {
                        (Some(i), _) => conf.sections[i].insert(&key, value),
                        (None, None) => orphan = Some((line, key, value)),
                        (None, Some((line, key, _))) => return Err(outside(*line, key)),
                    }
                }
            }
            if self.pos - start > MAX_LINE_BYTES {
                return Err(self.err(line, format!("line is longer than {MAX_LINE_BYTES} bytes")));
            }
            self.eat_eol();
        }
        if let Some((_, key, value)) = orphan {
            let i = conf.section_index("global");
            conf.sections[i].insert(&key, value);
        }
        Ok(conf)
    }

    fn err(&self, line: usize, reason: impl fmt::Display) -> Error {
        Error::einval(format!("line {line}: {reason}"))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\n' | b'\r'))
    }

    /// Consumes `\n`, `\r\n` or `\r` (Spirit's `eol`) if there is one.
    fn eat_eol(&mut self) {
        match self.peek() {
            Some(b'\r') => {
                self.pos += 1;
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
                self.line += 1;
            }
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
            }
            _ => {}
        }
    }

    /// A backslash right before a line break joins the next line to this one.
    fn eat_continuation(&mut self) -> bool {
        let next = self.bytes.get(self.pos + 1).copied();
        if self.peek() == Some(b'\\') && matches!(next, Some(b'\n' | b'\r')) {
            self.pos += 1;
            self.eat_eol();
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                _ if self.eat_continuation() => {}
                _ => return,
            }
        }
    }

    /// Comments run to the end of the line; a backslash there does not continue them.
    fn skip_comment(&mut self) {
        while !self.at_eol() {
            self.pos += 1;
        }
    }

    /// At a backslash that is not a continuation: the byte after it, taken literally.
    fn escaped(&mut self) -> u8 {
        match self.bytes.get(self.pos + 1).copied() {
            Some(c) => {
                self.pos += 2;
                c
            }
            None => {
                self.pos += 1;
                b'\\'
            }
        }
    }

    fn end_of_line(&mut self, after: &str) -> Result<()> {
        self.skip_blanks();
        match self.peek() {
            None | Some(b'\n' | b'\r') => Ok(()),
            Some(b'#' | b';') => {
                self.skip_comment();
                Ok(())
            }
            Some(_) => {
                let end = self.bytes[self.pos..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .map_or(self.bytes.len(), |n| self.pos + n);
                let rest = self.text.get(self.pos..end).unwrap_or("");
                let rest: String = rest.chars().take(40).collect();
                Err(self.err(self.line, format!("unexpected text after {after}: '{rest}'")))
            }
        }
    }

    fn heading(&mut self) -> Result<String> {
        let line = self.line;
        self.pos += 1; // '['
        let mut name = Vec::new();
        loop {
            if self.eat_continuation() {
                continue;
            }
            match self.peek() {
                None | Some(b'\n' | b'\r') => return Err(self.err(line, "section header has no closing ']'")),
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(b'#' | b';') => {
                    return Err(self.err(self.line, "'#' or ';' in a section name (escape it)"))
                }
                Some(b'\\') => name.push(self.escaped()),
                Some(c) => {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        if name.is_empty() {
            return Err(self.err(line, "empty section name '[]'"));
        }
        self.utf8(name, line)
    }

    fn key_value(&mut self) -> Result<(String, String)> {
        let line = self.line;
        let mut key = Vec::new();
        loop {
            if self.eat_continuation() {
                continue;
            }
            match self.peek() {
                Some(b'=') => {
                    self.pos += 1;
                    break;
                }
                None | Some(b'\n' | b'\r' | b'#' | b';') => {
                    let key = String::from_utf8_lossy(&key).trim().to_string();
                    return Err(self.err(line, format!("expected '=' after key '{key}'")));
                }
                Some(b'[') => return Err(self.err(self.line, "'[' in a key")),
                // Ceph keeps a key's raw text, backslashes included.
                Some(b'\\') => {
                    key.push(b'\\');
                    self.pos += 1;
                    if let Some(c) = self.peek() {
                        key.push(c);
                        self.pos += 1;
                    }
                }
                Some(c) => {
                    key.push(c);
                    self.pos += 1;
                }
            }
        }
        let key = self.utf8(key, line)?.trim_matches(is_ceph_space).to_string();
        if key.is_empty() {
            return Err(self.err(line, "missing key before '='"));
        }
        self.skip_blanks();
        let value = match self.peek() {
            Some(quote @ (b'"' | b'\'')) => {
                let value = self.quoted(quote)?;
                self.end_of_line("quoted value")?;
                value
            }
            _ => self.unquoted(),
        };
        let value = self.utf8(value, line)?.trim_matches(is_ceph_space).to_string();
        Ok((key, value))
    }

    fn quoted(&mut self, quote: u8) -> Result<Vec<u8>> {
        let line = self.line;
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            if self.eat_continuation() {
                continue;
            }
            match self.peek() {
                None | Some(b'\n' | b'\r') => {
                    let q = quote as char;
                    return Err(self.err(line, format!("quoted value has no closing {q}")));
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => value.push(self.escaped()),
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn unquoted(&mut self) -> Vec<u8> {
        let mut value = Vec::new();
        loop {
            if self.eat_continuation() {
                continue;
            }
            match self.peek() {
                None | Some(b'\n' | b'\r' | b'#' | b';') => return value,
                Some(b'\\') => value.push(self.escaped()),
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn utf8(&self, bytes: Vec<u8>, line: usize) -> Result<String> {
        // Only whole UTF-8 sequences are ever copied, so this cannot fail on a `&str` input;
        // checked anyway rather than trusted.
        String::from_utf8(bytes).map_err(|_| self.err(line, "invalid UTF-8"))
    }
}

// ---------------------------------------------------------------------------------------------
// Lookup and expansion

/// `client.cinder` → type `client`, id `cinder` (split at the first dot, as Ceph's EntityName).
struct EntityName<'a> {
    name: &'a str,
    kind: &'a str,
    id: &'a str,
}

impl<'a> EntityName<'a> {
    fn parse(name: &'a str) -> Self {
        let (kind, id) = name.split_once('.').unwrap_or((name, ""));
        EntityName { name, kind, id }
    }

    fn sections(&self) -> [&'a str; 3] {
        [self.name, self.kind, "global"]
    }
}

struct Expander<'a> {
    conf: &'a Conf,
    entity: EntityName<'a>,
    /// Normalized keys being expanded, outermost first; a repeat is a loop.
    stack: Vec<String>,
    substitutions: usize,
}

impl Expander<'_> {
    /// Ceph's `_expand_meta`: `$name` or `${name}` with `name` in `[a-z_]+`. Anything that is
    /// not a known metavariable or option stays as written.
    fn expand(&mut self, raw: &str) -> String {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let (var, len) = parse_var(&rest[at + 1..]);
            let literal = &rest[at..at + 1 + len];
            rest = &rest[at + 1 + len..];
            match var.and_then(|var| self.substitute(var)) {
                Some(text) if out.len() + text.len() + rest.len() <= MAX_EXPANDED_BYTES => {
                    out.push_str(&text)
                }
                _ => out.push_str(literal),
            }
        }
        out.push_str(rest);
        out
    }

    fn substitute(&mut self, var: &str) -> Option<String> {
        let e = &self.entity;
        match var {
            "cluster" => Some(self.conf.cluster.clone()),
            "type" => Some(e.kind.to_string()),
            "name" => Some(e.name.to_string()),
            "id" | "num" => Some(e.id.to_string()),
            "host" => Some(self.host()),
            "pid" | "cctid" => Some(pid()),
            "home" => Some(std::env::var("HOME").unwrap_or_default()),
            "data_dir" => {
                let option = match e.kind {
                    "osd" => "osd_data",
                    "mon" => "mon_data",
                    "mgr" => "mgr_data",
                    "mds" => "mds_data",
                    _ => return None,
                };
                self.option(option)
            }
            _ => self.option(var),
        }
    }

    fn option(&mut self, var: &str) -> Option<String> {
        let norm = normalize_key(var);
        if self.stack.contains(&norm)
            || self.stack.len() >= MAX_EXPANSION_DEPTH
            || self.substitutions >= MAX_SUBSTITUTIONS
        {
            return None;
        }
        let conf = self.conf;
        let raw = conf.lookup(&self.entity, &norm).or_else(|| conf.defaults.find(&norm))?;
        self.substitutions += 1;
        self.stack.push(norm);
        let value = self.expand(raw);
        self.stack.pop();
        Some(value)
    }

    /// Ceph's `$host` is the `host` option when set, else the short host name.
    fn host(&self) -> String {
        match self.conf.lookup(&self.entity, "host") {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => short_hostname(),
        }
    }
}

/// After a `$`: the variable name and how many bytes the reference spans, or `(None, 0)`.
fn parse_var(s: &str) -> (Option<&str>, usize) {
    let name_len = |s: &str| s.bytes().take_while(|&b| b.is_ascii_lowercase() || b == b'_').count();
    if let Some(inner) = s.strip_prefix('{') {
        let n = name_len(inner);
        if n > 0 && inner.as_bytes().get(n) == Some(&b'}') {
            return (Some(&inner[..n]), n + 2);
        }
        return (None, 0);
    }
    match name_len(s) {
        0 => (None, 0),
        n => (Some(&s[..n]), n),
    }
}

/// `$pid`: `$PID` from the environment if set (Ceph does this for containers), else our pid.
fn pid() -> String {
    match std::env::var("PID") {
        Ok(pid) if !pid.is_empty() => pid,
        _ => std::process::id().to_string(),
    }
}

/// The host name up to its first dot; `$NODE_NAME` wins when set, as in Ceph (containers).
pub fn short_hostname() -> String {
    let full = match std::env::var("NODE_NAME") {
        Ok(name) if !name.is_empty() => name,
        _ => system_hostname(),
    };
    full.split('.').next().unwrap_or_default().to_string()
}

fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Typed values

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        v.parse::<i64>().ok().map(|n| n != 0)
    }
}

/// Digits with an optional leading `+`.
fn parse_unsigned(v: &str) -> Option<u64> {
    let digits = v.strip_prefix('+').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_si_u64(v: &str) -> Option<u64> {
    const SI: [(char, u32); 6] = [('K', 3), ('M', 6), ('G', 9), ('T', 12), ('P', 15), ('E', 18)];
    let last = v.chars().last()?;
    match SI.iter().find(|(c, _)| *c == last) {
        Some(&(_, exp)) => parse_unsigned(&v[..v.len() - 1])?.checked_mul(10u64.pow(exp)),
        None => parse_unsigned(v),
    }
}

fn parse_iec_bytes(v: &str) -> Option<u64> {
    const IEC: [(char, u32); 6] = [('K', 10), ('M', 20), ('G', 30), ('T', 40), ('P', 50), ('E', 60)];
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '+')).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n = parse_unsigned(number)?;
    let shift = match unit {
        "" | "B" => 0,
        _ => {
            let mut chars = unit.chars();
            let prefix = chars.next()?;
            let &(_, shift) = IEC.iter().find(|(c, _)| *c == prefix)?;
            match chars.as_str() {
                "" | "i" | "B" => shift,
                _ => return None,
            }
        }
    };
    (n <= u64::MAX >> shift).then(|| n << shift)
}

// ---------------------------------------------------------------------------------------------
// Finding the file

/// The config file a Cairn command uses: the explicit `-c` path, else `$CAIRN_CONF`, else
/// `./cairn.conf`, else `/etc/cairn/cairn.conf`. ENOENT lists where it looked.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    let search: Vec<&Path> = DEFAULT_CONF_PATHS.iter().map(Path::new).collect();
    locate_with(explicit, CONF_ENV, &search)
}

/// [`locate`] with another environment variable and search list (the C ABI uses `CEPH_CONF`
/// and `/etc/ceph/ceph.conf`). A path given explicitly or by the variable must exist; it is not
/// silently replaced by a file found elsewhere.
pub fn locate_with(explicit: Option<&Path>, env_var: &str, search: &[&Path]) -> Result<PathBuf> {
    let is_file = |p: &Path| std::fs::metadata(p).map(|m| !m.is_dir()).unwrap_or(false);
    if let Some(path) = explicit {
        if is_file(path) {
            return Ok(path.to_path_buf());
        }
        return Err(Error::enoent(format!("config file {} does not exist", path.display())));
    }
    if let Some(value) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if is_file(&path) {
            return Ok(path);
        }
        return Err(Error::enoent(format!(
            "config file {} (from ${env_var}) does not exist",
            path.display()
        )));
    }
    if let Some(path) = search.iter().find(|p| is_file(p)) {
        return Ok(path.to_path_buf());
    }
    let places: Vec<String> = search.iter().map(|p| p.display().to_string()).collect();
    Err(Error::enoent(format!(
        "no config file found: -c not given, ${env_var} not set, none of {} exists",
        places.join(", ")
    )))
}

// ---------------------------------------------------------------------------------------------
// Monitor addresses

/// Parses a `mon host` value into `ip:port` strings (`[ipv6]:port` for IPv6, `name:port` for
/// host names, which the caller resolves). Accepts addresses separated by commas, semicolons or
/// whitespace; `[v2:ip:port/nonce,v1:ip:port/nonce]` address vectors (the v2 address is taken);
/// `v1:`/`v2:` prefixes; and addresses without a port ([`DEFAULT_MON_PORT`], or
/// [`DEFAULT_MON_PORT_V1`] after `v1:`). Duplicates are dropped; EINVAL on anything else.
pub fn parse_mon_hosts(value: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for token in split_outside_brackets(value, |c| matches!(c, ',' | ';') || c.is_whitespace())? {
        let addr = match token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) if has_msgr_prefix(inner) => pick_from_addrvec(inner)?,
            _ => parse_mon_addr(token)?,
        };
        if !out.contains(&addr) {
            if out.len() == MAX_MON_ADDRS {
                return Err(Error::einval(format!("mon host lists more than {MAX_MON_ADDRS} addresses")));
            }
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(Error::einval("mon host is empty"));
    }
    Ok(out)
}

fn has_msgr_prefix(s: &str) -> bool {
    s.starts_with("v1:") || s.starts_with("v2:") || s.starts_with("any:")
}

/// Splits at `sep` characters that are not inside `[...]`; empty pieces are skipped.
fn split_outside_brackets(s: &str, sep: impl Fn(char) -> bool) -> Result<Vec<&str>> {
    let bad = || Error::einval(format!("unbalanced brackets in mon address list '{s}'"));
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.checked_sub(1).ok_or_else(bad)?,
            c if depth == 0 && sep(c) => {
                if at > start {
                    pieces.push(&s[start..at]);
                }
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad());
    }
    if s.len() > start {
        pieces.push(&s[start..]);
    }
    Ok(pieces)
}

/// `v2:1.2.3.4:3300/0,v1:1.2.3.4:6789/0` → the v2 address, else the first one.
fn pick_from_addrvec(inner: &str) -> Result<String> {
    let items = split_outside_brackets(inner, |c| c == ',')?;
    let chosen = items.iter().find(|i| i.starts_with("v2:")).or(items.first());
    match chosen {
        Some(item) => parse_mon_addr(item),
        None => Err(Error::einval("empty mon address vector '[]'")),
    }
}

/// One address: optional `v1:`/`v2:`/`any:` prefix, host, optional `:port`, optional `/nonce`.
fn parse_mon_addr(token: &str) -> Result<String> {
    let bad = |why: &str| Error::einval(format!("invalid mon address '{token}': {why}"));
    let (rest, default_port) = if let Some(r) = token.strip_prefix("v1:") {
        (r, DEFAULT_MON_PORT_V1)
    } else if let Some(r) = token.strip_prefix("v2:").or_else(|| token.strip_prefix("any:")) {
        (r, DEFAULT_MON_PORT)
    } else {
        (token, DEFAULT_MON_PORT)
    };
    let rest = match rest.rsplit_once('/') {
        Some((addr, nonce)) if !nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_digit()) => addr,
        Some(_) => return Err(bad("a nonce after '/' must be a number")),
        None => rest,
    };
    let port = |p: &str| match p.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(bad("port must be 1-65535")),
    };
    if let Some(bracketed) = rest.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("not an IPv6 address"))?;
        let port = match after {
            "" => default_port,
            _ => port(after.strip_prefix(':').ok_or_else(|| bad("expected ':' after ']'"))?)?,
        };
        return Ok(format!("[{ip}]:{port}"));
    }
    if let Ok(ip) = rest.parse::<Ipv6Addr>() {
        return Ok(format!("[{ip}]:{default_port}"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (rest, default_port),
    };
    let valid_label =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(bad("not an IP address or host name"));
    }
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno;
    use std::sync::Mutex;

    /// Serializes tests that change environment variables.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    fn conf(text: &str) -> Conf {
        match Conf::parse(text) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}\n---\n{text}"),
        }
    }

    fn get(c: &Conf, entity: &str, key: &str) -> Option<String> {
        c.get(entity, key)
    }

    fn parse_err(text: &str) -> Error {
        match Conf::parse(text) {
            Ok(c) => panic!("parsed but should not have:\n{text}\n=> {c:?}"),
            Err(e) => e,
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("cairn-conf-test-{}-{tag}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
        fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("write temp file");
            path
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // --- syntax ---

    #[test]
    fn sections_and_entries_keep_file_order() {
        let c = conf("[global]\nb = 2\na = 1\n[client]\nz = 26\n[osd.3]\n");
        let names: Vec<&str> = c.sections().iter().map(|s| s.name()).collect();
        assert_eq!(names, ["global", "client", "osd.3"]);
        let global: Vec<(&str, &str)> = c.sections()[0].entries().collect();
        assert_eq!(global, [("b", "2"), ("a", "1")]);
        assert_eq!(c.section("osd.3").map(|s| s.entries().count()), Some(0));
        assert!(c.section("mon").is_none());
    }

    #[test]
    fn comments_whole_line_and_trailing() {
        let c = conf(
            "; leading comment\n# another\n[global] # after a header\n\
             a = 1 ; semicolon\nb = 2 # hash\nc = 3#no space needed\n  # indented comment\n\
             d = x # ends with backslash \\\ne = 5\n",
        );
        assert_eq!(get(&c, "client.admin", "a").as_deref(), Some("1"));
        assert_eq!(get(&c, "client.admin", "b").as_deref(), Some("2"));
        assert_eq!(get(&c, "client.admin", "c").as_deref(), Some("3"));
        // A backslash at the end of a comment does not continue it.
        assert_eq!(get(&c, "client.admin", "d").as_deref(), Some("x"));
        assert_eq!(get(&c, "client.admin", "e").as_deref(), Some("5"));
    }

    #[test]
    fn quoted_values() {
        let c = conf(concat!(
            "[global]\n",
            "dq = \"allow rwx pool=images\"   # comment after quotes\n",
            "sq = 'single q'\n",
            "esc = \"esc \\\" q \\\\ z\"\n",
            "apos = 'it\\'s'\n",
            "hash = \"a # b ; c\"\n",
            "spaces = \"  x  \"\n",
            "empty = \"\"\n",
            "inner = a \"b\" c\n",
        ));
        let g = |k| get(&c, "client.admin", k);
        assert_eq!(g("dq").as_deref(), Some("allow rwx pool=images"));
        assert_eq!(g("sq").as_deref(), Some("single q"));
        // ceph-conf 16.2.15: `esc " q \ z`.
        assert_eq!(g("esc").as_deref(), Some("esc \" q \\ z"));
        assert_eq!(g("apos").as_deref(), Some("it's"));
        // Ceph rejects '#' inside quotes; Cairn keeps it literally.
        assert_eq!(g("hash").as_deref(), Some("a # b ; c"));
        // Ceph trims after unquoting, so quotes do not preserve surrounding spaces.
        assert_eq!(g("spaces").as_deref(), Some("x"));
        assert_eq!(g("empty").as_deref(), Some(""));
        // Quotes only count at the start of a value.
        assert_eq!(g("inner").as_deref(), Some("a \"b\" c"));
    }

    #[test]
    fn quoted_value_errors_name_the_line() {
        let e = parse_err("[global]\na = 1\nb = \"unterminated\n");
        assert_eq!(e.errno, errno::EINVAL);
        assert!(e.message.starts_with("line 3: "), "{}", e.message);
        let e = parse_err("[global]\na = \"q\" trailing\n");
        assert!(e.message.starts_with("line 2: unexpected text"), "{}", e.message);
    }

    #[test]
    fn backslash_escapes_in_unquoted_values() {
        let c = conf("[global]\na = a\\;b\\#c\nb = \\x\\ty\nc = x\\\\\nd = end\\");
        assert_eq!(get(&c, "client.admin", "a").as_deref(), Some("a;b#c"));
        // `\t` is not a tab: a backslash just makes the next character literal (as in Ceph).
        assert_eq!(get(&c, "client.admin", "b").as_deref(), Some("xty"));
        // An escaped backslash at the end of a line is not a continuation.
        assert_eq!(get(&c, "client.admin", "c").as_deref(), Some("x\\"));
        assert_eq!(get(&c, "client.admin", "d").as_deref(), Some("end\\"));
    }

    #[test]
    fn line_continuations() {
        let c = conf(concat!(
            "[global]\n",
            "cont = alpha \\\n    beta\n",
            "after_eq = \\\n b\n",
            "crlf = one\\\r\ntwo\r\n",
            "quoted = \"x\\\ny\"\n",
            "next = 1\n",
        ));
        let g = |k| get(&c, "client.admin", k);
        // ceph-conf 16.2.15 gives "alpha     beta": the backslash and line break vanish.
        assert_eq!(g("cont").as_deref(), Some("alpha     beta"));
        assert_eq!(g("after_eq").as_deref(), Some("b"));
        assert_eq!(g("crlf").as_deref(), Some("onetwo"));
        assert_eq!(g("quoted").as_deref(), Some("xy"));
        assert_eq!(g("next").as_deref(), Some("1"));
    }

    #[test]
    fn line_numbers_count_continued_lines() {
        let e = parse_err("[global]\na = 1 \\\n 2\nbad line\n");
        assert!(e.message.starts_with("line 4: expected '='"), "{}", e.message);
    }

    #[test]
    fn whitespace_is_trimmed_and_crlf_accepted() {
        let c = conf("[global]\r\n  a  =   spaced value   \r\n\tb\t=\tt\t\r\n  [client]\nc=3");
        assert_eq!(get(&c, "client.admin", "a").as_deref(), Some("spaced value"));
        assert_eq!(get(&c, "client.admin", "b").as_deref(), Some("t"));
        // No newline at the end of the file (Ceph 16 rejects this; Cairn accepts it).
        assert_eq!(get(&c, "client.admin", "c").as_deref(), Some("3"));
        assert_eq!(get(&c, "client.admin", "missing"), None);
        assert_eq!(conf("").sections().len(), 0);
        assert_eq!(conf("\n\n# only comments\n").sections().len(), 0);
    }

    #[test]
    fn values_may_contain_equals_and_brackets() {
        let c = conf("[global]\na = x = y\nb = [v2:1.2.3.4:3300/0,v1:1.2.3.4:6789/0]\n");
        assert_eq!(get(&c, "client.admin", "a").as_deref(), Some("x = y"));
        assert_eq!(get(&c, "client.admin", "b").as_deref(), Some("[v2:1.2.3.4:3300/0,v1:1.2.3.4:6789/0]"));
    }

    #[test]
    fn duplicate_keys_last_wins_and_repeated_sections_merge() {
        let c = conf(
            "[global]\ndup = first\nrbd cache = false\ndup = second\nrbd_cache = true\n\
             [client]\nx = 1\n[global]\nlater = merged\ndup = third\n",
        );
        assert_eq!(get(&c, "client.admin", "dup").as_deref(), Some("third"));
        assert_eq!(get(&c, "client.admin", "rbd cache").as_deref(), Some("true"));
        assert_eq!(get(&c, "client.admin", "later").as_deref(), Some("merged"));
        assert_eq!(c.sections().len(), 2);
        // One entry per key, at the first key's place, spelled as last written.
        let global: Vec<(&str, &str)> = c.section("global").expect("global").entries().collect();
        assert_eq!(global, [("dup", "third"), ("rbd_cache", "true"), ("later", "merged")]);
    }

    #[test]
    fn keys_outside_sections() {
        // Ceph rejects keys before the first header...
        let e = parse_err("# comment\na = 1\n[global]\nb = 2\n");
        assert_eq!(e.errno, errno::EINVAL);
        assert_eq!(e.message, "line 2: key 'a' is outside of any [section]");
        let e = parse_err("a = 1\nb = 2\n");
        assert!(e.message.starts_with("line 1: key 'a'"), "{}", e.message);
        // ...except a file that is a single `key = value` line, which it reads as [global].
        let c = conf("mon host = 10.0.0.1\n");
        assert_eq!(get(&c, "osd.1", "mon_host").as_deref(), Some("10.0.0.1"));
        assert_eq!(c.sections()[0].name(), "global");
    }

    #[test]
    fn malformed_lines_are_einval_with_line_numbers() {
        let cases: &[(&str, &str)] = &[
            ("[global]\n=1\n", "line 2: missing key"),
            ("[global]\na[b] = 1\n", "line 2: '[' in a key"),
            ("[]\na = 1\n", "line 1: empty section name"),
            ("[glo#bal]\na = 1\n", "line 1: '#' or ';'"),
            ("[global] x\na = 1\n", "line 1: unexpected text after section header: 'x'"),
            ("[global\na = 1\n", "line 1: section header has no closing"),
            ("[global]\n\n\nnovalue\n", "line 4: expected '=' after key 'novalue'"),
            ("[global]\nkey # = 1\n", "line 2: expected '='"),
            ("[global]\na = 'x\n", "line 2: quoted value has no closing '"),
        ];
        for (text, want) in cases {
            let e = parse_err(text);
            assert_eq!(e.errno, errno::EINVAL, "{text:?}");
            assert!(e.message.starts_with(want), "{text:?}: got {:?}, want {want:?}", e.message);
        }
    }

    #[test]
    fn section_names_are_verbatim_with_escapes() {
        let c = conf("[ global ]\na = 1\n[glo\\]bal]\nb = 2\n[client.cinder-backup]\nc = 3\n");
        // As in Ceph: `[ global ]` is a section named " global ", not [global].
        assert_eq!(get(&c, "client.admin", "a"), None);
        assert_eq!(c.section(" global ").and_then(|s| s.get("a")), Some("1"));
        assert_eq!(c.section("glo]bal").and_then(|s| s.get("b")), Some("2"));
        assert_eq!(get(&c, "client.cinder-backup", "c").as_deref(), Some("3"));
    }

    #[test]
    fn utf8_is_required() {
        let e = Conf::parse_bytes(b"[global]\na = 1\nb = \xff\n").expect_err("bad utf-8");
        assert_eq!(e.errno, errno::EINVAL);
        assert_eq!(e.message, "line 3: invalid UTF-8");
        let c = Conf::parse_bytes("[global]\nname = café 中文\n".as_bytes()).expect("utf-8");
        assert_eq!(get(&c, "client.admin", "name").as_deref(), Some("café 中文"));
        let e = Conf::parse_bytes(b"[global]\na = x\0y\n").expect_err("nul");
        assert_eq!(e.message, "line 2: NUL byte");
    }

    #[test]
    fn size_limits() {
        let big = format!("[global]\n{}", "# filler line\n".repeat(MAX_FILE_BYTES / 14 + 1));
        assert!(big.len() > MAX_FILE_BYTES);
        let e = parse_err(&big);
        assert_eq!(e.errno, errno::EINVAL);
        assert!(e.message.contains("maximum is 1048576"), "{}", e.message);
        let long = format!("[global]\na = {}\n", "x".repeat(MAX_LINE_BYTES));
        let e = parse_err(&long);
        assert!(e.message.starts_with("line 2: line is longer than 65536"), "{}", e.message);
        // Continuations count toward the logical line.
        let piece = format!("{} \\\n", "y".repeat(1000));
        let long = format!("[global]\na = {}end\n", piece.repeat(70));
        assert!(parse_err(&long).message.starts_with("line 2: line is longer"));
    }

    // --- lookup ---

    #[test]
    fn lookup_order_follows_ceph() {
        let c = conf(
            "[global]\na = global\nb = global\nc = global\n\
             [client]\na = client\nb = client\n[client.cinder]\na = cinder\n\
             [osd]\na = osd\nb = osd\n[osd.3]\na = osd.3\n\
             [mon]\nb = mon\n[mon.a]\na = mon.a\n",
        );
        let g = |e, k| get(&c, e, k);
        assert_eq!(g("client.cinder", "a").as_deref(), Some("cinder"));
        assert_eq!(g("client.cinder", "b").as_deref(), Some("client"));
        assert_eq!(g("client.cinder", "c").as_deref(), Some("global"));
        assert_eq!(g("client.glance", "a").as_deref(), Some("client"));
        assert_eq!(g("osd.3", "a").as_deref(), Some("osd.3"));
        assert_eq!(g("osd.4", "a").as_deref(), Some("osd"));
        assert_eq!(g("osd.3", "c").as_deref(), Some("global"));
        assert_eq!(g("mon.a", "a").as_deref(), Some("mon.a"));
        assert_eq!(g("mon.a", "b").as_deref(), Some("mon"));
        assert_eq!(g("mon.b", "a").as_deref(), Some("global"));
        assert_eq!(g("mgr.x", "b").as_deref(), Some("global"));
        assert_eq!(g("client.cinder", "zz"), None);
        assert_eq!(search_sections("client.cinder"), ["client.cinder", "client", "global"]);
        assert_eq!(search_sections("client.rgw.gw1"), ["client.rgw.gw1", "client", "global"]);
        assert_eq!(search_sections("global"), ["global"]);
        assert_eq!(search_sections("osd"), ["osd", "global"]);
    }

    #[test]
    fn key_normalization() {
        let c = conf("[global]\nmon host = 10.0.0.1\nmon-initial-members = a\nUpper Key = V\n");
        for key in ["mon host", "mon_host", "mon-host", "  mon   host ", "mon__host", "mon\thost"] {
            assert_eq!(get(&c, "client.admin", key).as_deref(), Some("10.0.0.1"), "{key:?}");
        }
        // Dashes in the file are equivalent too (Ceph 16 does not fold dashes; Cairn does).
        assert_eq!(get(&c, "client.admin", "mon initial members").as_deref(), Some("a"));
        // Keys are case-sensitive, as in ceph-conf.
        assert_eq!(get(&c, "client.admin", "Upper_Key").as_deref(), Some("V"));
        assert_eq!(get(&c, "client.admin", "upper key"), None);
        assert_eq!(normalize_key(" rbd  cache-max__dirty "), "rbd_cache_max_dirty");
        assert_eq!(normalize_key("_leading"), "_leading");
    }

    // --- expansion ---

    #[test]
    fn metavariables() {
        let text = "[global]\nlog file = /var/log/$cluster/$name.log\n\
                    t = $type/$id/$num/${name}/${cluster}x$clusterx\n\
                    lit = $ $$ $Upper ${type ${} $nosuch ${nosuch} 5$\n\
                    pid = $pid.$cctid\nhome = $home/x\n";
        let mut c = conf(text);
        let g = |c: &Conf, e, k| get(c, e, k);
        assert_eq!(g(&c, "client.cinder", "log_file").as_deref(), Some("/var/log/ceph/client.cinder.log"));
        assert_eq!(g(&c, "osd.3", "t").as_deref(), Some("osd/3/3/osd.3/cephx$clusterx"));
        assert_eq!(
            g(&c, "client.admin", "lit").as_deref(),
            Some("$ $$ $Upper ${type ${} $nosuch ${nosuch} 5$")
        );
        let pid = std::env::var("PID").ok().filter(|p| !p.is_empty());
        let pid = pid.unwrap_or_else(|| std::process::id().to_string());
        assert_eq!(g(&c, "client.admin", "pid"), Some(format!("{pid}.{pid}")));
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(g(&c, "client.admin", "home"), Some(format!("{home}/x")));
        // The raw value is still there.
        assert_eq!(c.get_raw("client.admin", "log file"), Some("/var/log/$cluster/$name.log"));
        // Cairn sets its own cluster name.
        c.set_cluster("cairn");
        assert_eq!(c.cluster(), "cairn");
        assert_eq!(g(&c, "mon.a", "log_file").as_deref(), Some("/var/log/cairn/mon.a.log"));
    }

    #[test]
    fn host_metavariable() {
        let c = conf("[global]\nlog = /x/$host\n[osd.3]\nhost = storage3\n");
        assert_eq!(get(&c, "osd.3", "log").as_deref(), Some("/x/storage3"));
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let want = match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => n,
            _ => system_hostname(),
        };
        let want = want.split('.').next().unwrap_or_default().to_string();
        assert!(!want.contains('.'));
        assert_eq!(get(&c, "osd.4", "log"), Some(format!("/x/{want}")));
        assert_eq!(short_hostname(), want);
    }

    #[test]
    fn option_references_expand() {
        let c = conf(
            "[global]\nrun dir = /run/$cluster\nadmin socket = $run_dir/$cluster-$name.asok\n\
             uses_default = ${log_dir}|$keyring\n\
             [osd]\nosd data = /var/lib/ceph/osd/$cluster-$id\njournal = $data_dir/journal\n\
             [client]\nrun_dir = /client/run\n",
        );
        let g = |e, k| get(&c, e, k);
        assert_eq!(g("osd.1", "admin socket").as_deref(), Some("/run/ceph/ceph-osd.1.asok"));
        // References resolve for the same entity, so [client]'s run_dir applies to clients.
        assert_eq!(g("client.x", "admin_socket").as_deref(), Some("/client/run/ceph-client.x.asok"));
        assert_eq!(g("osd.2", "journal").as_deref(), Some("/var/lib/ceph/osd/ceph-2/journal"));
        // $data_dir means nothing for a client.
        assert_eq!(g("client.x", "journal"), None);
        let c2 = conf("[client]\nj = $data_dir/j\n");
        assert_eq!(get(&c2, "client.x", "j").as_deref(), Some("$data_dir/j"));
        // Unknown options stay literal.
        assert_eq!(g("osd.1", "uses_default").as_deref(), Some("${log_dir}|$keyring"));
    }

    #[test]
    fn defaults_feed_references_but_not_get() {
        let mut c = conf("[global]\nadmin socket = $run_dir/$cluster-$name.asok\n");
        c.set_cluster("cairn");
        assert_eq!(get(&c, "mon.a", "admin_socket").as_deref(), Some("/var/run/cairn/cairn-mon.a.asok"));
        assert_eq!(get(&c, "mon.a", "run_dir"), None);
        c.set_default("log dir", "/var/log/$cluster");
        c.set("global", "log file", "$log_dir/$name.log").expect("set");
        assert_eq!(get(&c, "osd.0", "log_file").as_deref(), Some("/var/log/cairn/osd.0.log"));
        assert!(!c.to_string().contains("log dir"));
    }

    #[test]
    fn reference_loops_and_blowups_are_bounded() {
        let c = conf("[global]\na = x$b\nb = y$a\nself = [$self]\nc = $d\nd = $c$c\n");
        assert_eq!(get(&c, "client.admin", "a").as_deref(), Some("xy$a"));
        assert_eq!(get(&c, "client.admin", "b").as_deref(), Some("yx$b"));
        assert_eq!(get(&c, "client.admin", "self").as_deref(), Some("[$self]"));
        assert_eq!(get(&c, "client.admin", "c").as_deref(), Some("$c$c"));

        // Variable names are [a-z_]+ as in Ceph, so `$k1` is `$k` followed by "1".
        let c = conf("[global]\nk = K\nv = $k1\n");
        assert_eq!(get(&c, "client.admin", "v").as_deref(), Some("K1"));

        // A chain deeper than the bound stops expanding at the bound: k, kx, kxx, ...
        let name = |i: usize| format!("k{}", "x".repeat(i));
        let mut chain = String::from("[global]\n");
        for i in 0..40 {
            chain.push_str(&format!("{} = {i}:${}\n", name(i), name(i + 1)));
        }
        let c = conf(&chain);
        let v = get(&c, "client.admin", "k").expect("k");
        let depth = MAX_EXPANSION_DEPTH;
        assert!(v.starts_with("0:1:2:"), "{v}");
        assert!(v.ends_with(&format!("{}:${}", depth - 1, name(depth))), "{v}");

        // Doubling at every level would be 2^14 * 16 bytes from 2^15 substitutions; the
        // substitution and size bounds stop it.
        let name = |i: usize| format!("d{}", "x".repeat(i));
        let mut doubling = String::from("[global]\n");
        for i in 0..14 {
            doubling.push_str(&format!("{} = ${1}${1}\n", name(i), name(i + 1)));
        }
        doubling.push_str(&format!("{} = 0123456789abcdef\n", name(14)));
        let c = conf(&doubling);
        let v = get(&c, "client.admin", "d").expect("d");
        assert!(v.contains("0123456789abcdef"), "expanded as far as the bounds allow");
        assert!(v.len() <= MAX_EXPANDED_BYTES, "{}", v.len());
        assert!(v.contains('$'), "the bound leaves some references unexpanded");
    }

    // --- typed getters ---

    #[test]
    fn typed_getters() {
        let c = conf(concat!(
            "[global]\n",
            "t1 = true\nt2 = TRUE\nt3 = yes\nt4 = 1\nt5 = -1\nt6 = 2\n",
            "f1 = false\nf2 = No\nf3 = 0\n",
            "bad_bool = maybe\n",
            "n = 42\nn_plus = +4\nn_k = 1K\nn_m = 3M\nn_bad = 2B\nn_neg = -3\nn_hex = 0x10\n",
            "x = 0.25\nx_exp = 1e3\nx_bad = 1.5x\n",
            "s1 = 32M\ns2 = 4K\ns3 = 1G\ns4 = 2T\ns5 = 4Ki\ns6 = 1KB\ns7 = 10B\ns8 = 1Mi\n",
            "s9 = 268435456\ns10 = 15E\n",
            "sb1 = 1.5M\nsb2 = 1k\nsb3 = 4KiB\nsb4 = -1\nsb5 = 16E\nsb6 = 1MiB\nsb7 = 0x10\n",
        ));
        let e = "client.admin";
        for k in ["t1", "t2", "t3", "t4", "t5", "t6"] {
            assert_eq!(c.get_bool(e, k), Ok(Some(true)), "{k}");
        }
        for k in ["f1", "f2", "f3"] {
            assert_eq!(c.get_bool(e, k), Ok(Some(false)), "{k}");
        }
        assert_eq!(c.get_bool(e, "absent"), Ok(None));
        let err = c.get_bool(e, "bad_bool").expect_err("maybe");
        assert_eq!(err.errno, errno::EINVAL);
        assert!(err.message.contains("'bad_bool'") && err.message.contains("'maybe'"), "{}", err.message);

        assert_eq!(c.get_u64(e, "n"), Ok(Some(42)));
        assert_eq!(c.get_u64(e, "n_plus"), Ok(Some(4)));
        assert_eq!(c.get_u64(e, "n_k"), Ok(Some(1000)));
        assert_eq!(c.get_u64(e, "n_m"), Ok(Some(3_000_000)));
        for k in ["n_bad", "n_neg", "n_hex", "x"] {
            let err = c.get_u64(e, k).expect_err(k);
            assert!(err.message.contains(&format!("'{k}'")), "{}", err.message);
        }
        assert_eq!(c.get_f64(e, "x"), Ok(Some(0.25)));
        assert_eq!(c.get_f64(e, "x_exp"), Ok(Some(1000.0)));
        assert_eq!(c.get_f64(e, "n"), Ok(Some(42.0)));
        assert!(c.get_f64(e, "x_bad").is_err());

        // Sizes: the values `ceph-conf --show-config-value rbd_cache_size` printed for these.
        let sizes = [
            ("s1", 33554432u64),
            ("s2", 4096),
            ("s3", 1073741824),
            ("s4", 2199023255552),
            ("s5", 4096),
            ("s6", 1024),
            ("s7", 10),
            ("s8", 1048576),
            ("s9", 268435456),
            ("s10", 17293822569102704640),
        ];
        for (k, want) in sizes {
            assert_eq!(c.get_bytes(e, k), Ok(Some(want)), "{k}");
        }
        for k in ["sb1", "sb2", "sb3", "sb4", "sb5", "sb6", "sb7"] {
            let err = c.get_bytes(e, k).expect_err(k);
            assert_eq!(err.errno, errno::EINVAL);
            assert!(err.message.contains(&format!("'{k}'")), "{}", err.message);
        }
    }

    // --- writing ---

    #[test]
    fn set_remove_and_round_trip() {
        let mut c = conf("[global]\nfsid = abc # comment dropped\n[client]\nrbd cache = true\n");
        c.set("client", "rbd_cache", "false").expect("set");
        c.set("client.cinder", "keyring", "/etc/ceph/$cluster.$name.keyring").expect("set");
        c.set("global", "weird", "#x; \\y 'q' \"z\"").expect("set");
        c.set("global", "quoted", "\"starts with a quote").expect("set");
        c.set("glo]bal#", "k", "v").expect("set");
        assert_eq!(get(&c, "client.cinder", "rbd cache").as_deref(), Some("false"));
        assert_eq!(
            get(&c, "client.cinder", "keyring").as_deref(),
            Some("/etc/ceph/ceph.client.cinder.keyring")
        );
        let text = c.to_string();
        assert!(text.starts_with("[global]\nfsid = abc\n"), "{text}");
        assert!(text.contains("[client]\nrbd_cache = false\n"), "{text}");
        let back = conf(&text);
        assert_eq!(back.sections(), c.sections(), "{text}");
        assert_eq!(get(&back, "client.admin", "weird").as_deref(), Some("#x; \\y 'q' \"z\""));
        assert_eq!(get(&back, "client.admin", "quoted").as_deref(), Some("\"starts with a quote"));
        assert_eq!(back.to_string(), text);

        assert_eq!(c.remove("client", "rbd cache").as_deref(), Some("false"));
        assert_eq!(c.remove("client", "rbd cache"), None);
        assert_eq!(c.remove("nosuch", "x"), None);
        assert_eq!(get(&c, "client.cinder", "rbd_cache"), None);
        c.set("client", "after remove", "1").expect("set");
        assert_eq!(c.section("client").and_then(|s| s.get("after_remove")), Some("1"));
    }

    #[test]
    fn set_rejects_what_a_file_cannot_hold() {
        let mut c = Conf::new();
        let bad: &[(&str, &str, &str)] = &[
            ("", "k", "v"),
            ("s\nt", "k", "v"),
            ("global", "", "v"),
            ("global", "   ", "v"),
            ("global", "a=b", "v"),
            ("global", "a[b", "v"),
            ("global", "a#b", "v"),
            ("global", "a\\b", "v"),
            ("global", "k", "line\nbreak"),
            ("global", "k", "nul\0"),
        ];
        for (s, k, v) in bad {
            let e = c.set(s, k, v).expect_err("should be rejected");
            assert_eq!(e.errno, errno::EINVAL, "{s:?} {k:?} {v:?}");
        }
        assert!(c.set("global", &"k".repeat(MAX_NAME_BYTES + 1), "v").is_err());
        assert!(c.set("global", "k", &"v".repeat(MAX_LINE_BYTES + 1)).is_err());
        assert!(c.sections().is_empty(), "a rejected set changes nothing");
        c.set("global", "  padded key  ", "  padded value  ").expect("set");
        assert_eq!(c.get_raw("x", "padded_key"), Some("padded value"));
    }

    // --- files ---

    #[test]
    fn load_reads_files_and_names_the_path_on_errors() {
        let dir = TempDir::new("load");
        let path = dir.write("cairn.conf", b"[global]\nlog = /var/log/$cluster.log\n");
        let c = Conf::load(&path).expect("load");
        assert_eq!(c.cluster(), "cairn");
        assert_eq!(get(&c, "mon.a", "log").as_deref(), Some("/var/log/cairn.log"));
        let c = Conf::load(&dir.write("prod.conf", b"[global]\n")).expect("load");
        assert_eq!(c.cluster(), "prod");
        let c = Conf::load(&dir.write("settings", b"[global]\n")).expect("load");
        assert_eq!(c.cluster(), "ceph");

        let missing = dir.0.join("missing.conf");
        let e = Conf::load(&missing).expect_err("missing");
        assert_eq!(e.errno, errno::ENOENT);
        assert!(e.message.contains(&missing.display().to_string()), "{}", e.message);

        let bad = dir.write("bad.conf", b"[global]\nok = 1\nnot a key value\n");
        let e = Conf::load(&bad).expect_err("bad");
        assert_eq!(e.errno, errno::EINVAL);
        assert_eq!(e.message, format!("{}: line 3: expected '=' after key 'not a key value'", bad.display()));

        let big = dir.write("big.conf", &vec![b'#'; MAX_FILE_BYTES + 1]);
        assert_eq!(Conf::load(&big).expect_err("big").errno, errno::EINVAL);
        assert!(Conf::load(&dir.0).is_err(), "a directory is not a config file");
        // /dev/null is an empty config, as in Ceph.
        assert_eq!(Conf::load(Path::new("/dev/null")).expect("/dev/null").sections().len(), 0);
    }

    #[test]
    fn locate_order() {
        let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new("locate");
        let explicit = dir.write("explicit.conf", b"");
        let from_env = dir.write("env.conf", b"");
        let local = dir.0.join("cairn.conf");
        let system = dir.write("system.conf", b"");
        let var = "CAIRN_CONF_TEST_LOCATE";
        let search = [local.as_path(), system.as_path()];

        std::env::remove_var(var);
        assert_eq!(locate_with(None, var, &search), Ok(system.clone()));
        std::fs::write(&local, b"").expect("write");
        assert_eq!(locate_with(None, var, &search), Ok(local.clone()));
        std::env::set_var(var, &from_env);
        assert_eq!(locate_with(None, var, &search), Ok(from_env.clone()));
        assert_eq!(locate_with(Some(&explicit), var, &search), Ok(explicit.clone()));

        // A path named explicitly or by the variable must exist; no silent fallback.
        let gone = dir.0.join("gone.conf");
        let e = locate_with(Some(&gone), var, &search).expect_err("gone");
        assert_eq!(e.errno, errno::ENOENT);
        assert!(e.message.contains("gone.conf"), "{}", e.message);
        std::env::set_var(var, &gone);
        let e = locate_with(None, var, &search).expect_err("gone env");
        assert!(e.message.contains("gone.conf") && e.message.contains(var), "{}", e.message);

        std::env::set_var(var, "");
        std::fs::remove_file(&local).expect("rm");
        std::fs::remove_file(&system).expect("rm");
        let e = locate_with(None, var, &search).expect_err("none");
        assert_eq!(e.errno, errno::ENOENT);
        let places = [var.to_string(), local.display().to_string(), system.display().to_string()];
        for place in &places {
            assert!(e.message.contains(place.as_str()), "{place} missing from {}", e.message);
        }
        std::env::remove_var(var);

        // The real entry point honours $CAIRN_CONF.
        std::env::set_var(CONF_ENV, &from_env);
        assert_eq!(locate(None), Ok(from_env.clone()));
        assert_eq!(locate(Some(&explicit)), Ok(explicit));
        std::env::remove_var(CONF_ENV);
    }

    // --- mon host ---

    #[test]
    fn mon_hosts_forms() {
        let ok = |v: &str| parse_mon_hosts(v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(ok("10.0.0.1,10.0.0.2:6790"), ["10.0.0.1:3300", "10.0.0.2:6790"]);
        assert_eq!(ok("[v2:127.0.0.1:3300/0,v1:127.0.0.1:6789/0]"), ["127.0.0.1:3300"]);
        assert_eq!(ok("[v1:127.0.0.1:6789/0,v2:127.0.0.1:3301/0]"), ["127.0.0.1:3301"]);
        assert_eq!(ok("[v1:10.0.0.9:6789/0]"), ["10.0.0.9:6789"]);
        assert_eq!(
            ok("[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0],[v2:10.0.0.2:3300/0,v1:10.0.0.2:6789/0]"),
            ["10.0.0.1:3300", "10.0.0.2:3300"]
        );
        assert_eq!(
            ok("9.115.251.194,9.115.251.195,9.115.251.218"),
            ["9.115.251.194:3300", "9.115.251.195:3300", "9.115.251.218:3300"]
        );
        assert_eq!(ok(" a:1 ; b:2  c:3,,"), ["a:1", "b:2", "c:3"]);
        assert_eq!(
            ok("v2:10.0.0.1:3300/0 v1:10.0.0.2/0 v1:10.0.0.3"),
            ["10.0.0.1:3300", "10.0.0.2:6789", "10.0.0.3:6789"]
        );
        assert_eq!(ok("mon1.example.com,mon2:6789"), ["mon1.example.com:3300", "mon2:6789"]);
        assert_eq!(ok("[::1]:6789,[fe80::1],::2"), ["[::1]:6789", "[fe80::1]:3300", "[::2]:3300"]);
        assert_eq!(ok("[v2:[::1]:3300/0,v1:[::1]:6789/0]"), ["[::1]:3300"]);
        assert_eq!(ok("10.0.0.1,10.0.0.1:3300"), ["10.0.0.1:3300"]);

        for bad in [
            "",
            " , ",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "10.0.0.1:port",
            "[v2:1.2.3.4:3300/0",
            "1.2.3.4]",
            "[::1",
            "[zz::1]:1",
            "bad/host",
            "h:1/x",
            "a..b",
            "[v2:]",
        ] {
            let e = parse_mon_hosts(bad).expect_err(bad);
            assert_eq!(e.errno, errno::EINVAL, "{bad:?}");
        }
        let many: Vec<String> =
            (0..=MAX_MON_ADDRS).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        assert!(parse_mon_hosts(&many.join(",")).is_err());
    }

    // --- real snippets from the seed guides ---

    /// /work/shared/seeds/000: the nova-compute section of ceph.conf.
    const SEED_000_CLIENTS: &str = "\
[client]
rbd cache = true
rbd cache size = 268435456
rbd cache max dirty = 134217728
rbd cache max dirty age = 5
rbd cache writethrough until flush = true
log file = /var/log/qemu/qemu-guest-$pid.log
rbd concurrent management ops = 20

[client.cinder]
keyring = /etc/ceph/client.cinder.keyring

[client.cinder-backup]
keyring = /etc/ceph/client.cinder-backup.keyring

[client.glance]
keyring = /etc/ceph/client.glance.keyring
";

    /// /work/shared/seeds/001: the cluster settings (under the [global] they come from) and the
    /// compute node's [client] block with its commented-out alternatives.
    const SEED_001_GLOBAL_CLIENT: &str = "\
[global]
mon_initial_members = ceph1, ceph2, ceph3
mon_host = 9.115.251.194,9.115.251.195,9.115.251.218
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
filestore_xattr_use_omap = true

[client]
rbd cache = true
#rbd cache = false
#rbd cache writethrough until flush = true
#admin socket = /var/run/ceph/$cluster-$type.$id.$pid.$cctid.asok
log file = /var/log/ceph/qemu-guest.$pid.log
#log file = /var/lib/libvirt/qemu/qemu-guest.$pid.log
";

    /// /work/shared/seeds/003: indented [client] block; 004: a keyring (same file format).
    const SEED_003_004: &str = "\
[client]
    rbd cache = true
    rbd cache writethrough until flush = true
    admin socket = /var/run/ceph/$cluster-$type.$id.$pid.$cctid.asok

[client.cinder-backup]
\tkey = AQDH3oVcaAfVJxAAMvwYBYLKNP86OkT6lPNMRQ==
\tcaps mon = \"allow r\"
\tcaps osd = \"allow rwx pool=volume, allow rwx pool=backups\"
";

    #[test]
    fn seed_snippets() {
        let pid = std::env::var("PID").ok().filter(|p| !p.is_empty());
        let pid = pid.unwrap_or_else(|| std::process::id().to_string());

        let c = conf(SEED_000_CLIENTS);
        assert_eq!(c.get_bool("client.cinder", "rbd cache"), Ok(Some(true)));
        assert_eq!(c.get_bytes("client.cinder", "rbd_cache_size"), Ok(Some(268435456)));
        assert_eq!(c.get_bytes("client.cinder", "rbd cache max dirty"), Ok(Some(134217728)));
        assert_eq!(c.get_f64("client.nova", "rbd_cache_max_dirty_age"), Ok(Some(5.0)));
        assert_eq!(c.get_bool("client.glance", "rbd cache writethrough until flush"), Ok(Some(true)));
        assert_eq!(c.get_u64("client.cinder", "rbd concurrent management ops"), Ok(Some(20)));
        assert_eq!(
            get(&c, "client.cinder-backup", "keyring").as_deref(),
            Some("/etc/ceph/client.cinder-backup.keyring")
        );
        assert_eq!(get(&c, "client.cinder", "log file"), Some(format!("/var/log/qemu/qemu-guest-{pid}.log")));
        assert_eq!(get(&c, "client.nova", "keyring"), None);
        assert_eq!(get(&c, "osd.0", "rbd cache"), None);

        let c = conf(SEED_001_GLOBAL_CLIENT);
        let mons = parse_mon_hosts(&get(&c, "client.cinder", "mon host").expect("mon host"));
        assert_eq!(
            mons,
            Ok(vec![
                "9.115.251.194:3300".to_string(),
                "9.115.251.195:3300".to_string(),
                "9.115.251.218:3300".to_string(),
            ])
        );
        assert_eq!(get(&c, "osd.1", "auth cluster required").as_deref(), Some("cephx"));
        assert_eq!(get(&c, "client.cinder", "mon_initial_members").as_deref(), Some("ceph1, ceph2, ceph3"));
        assert_eq!(c.get_bool("client.nova", "rbd_cache"), Ok(Some(true)));
        assert_eq!(get(&c, "client.nova", "admin socket"), None, "commented out");
        assert_eq!(get(&c, "client.nova", "log_file"), Some(format!("/var/log/ceph/qemu-guest.{pid}.log")));

        let mut c = conf(SEED_003_004);
        c.set_cluster("cairn");
        assert_eq!(
            get(&c, "client.cinder", "admin_socket"),
            Some(format!("/var/run/ceph/cairn-client.cinder.{pid}.{pid}.asok"))
        );
        assert_eq!(get(&c, "client.cinder-backup", "caps mon").as_deref(), Some("allow r"));
        assert_eq!(
            get(&c, "client.cinder-backup", "caps_osd").as_deref(),
            Some("allow rwx pool=volume, allow rwx pool=backups")
        );
        assert_eq!(
            get(&c, "client.cinder-backup", "key").as_deref(),
            Some("AQDH3oVcaAfVJxAAMvwYBYLKNP86OkT6lPNMRQ==")
        );
    }

    // --- golden: real ceph-conf ---

    /// Golden fixture. Produced with Debian bookworm's ceph-common 16.2.15 (pacific) by saving
    /// this text as `ceph.conf` (so `$cluster` is "ceph") and running, for each row,
    /// `ceph-conf -c ceph.conf --name ENTITY --lookup KEY` (exit status 1 = `None`).
    const GOLDEN_CONF: &str = r#"# Fixture for cairn-types conf.rs golden tests.
[global]
fsid = 457eb676-33da-42ec-9a8c-9293d545c337
mon_initial_members = ceph1, ceph2, ceph3
mon_host = 9.115.251.194,9.115.251.195,9.115.251.218
auth_cluster_required = cephx
auth client required = cephx   ; spaces in the key
host = node1
run dir = /run/$cluster
log_file = /var/log/$cluster/$name-on-$host.log
keyring = /etc/ceph/$cluster.$name.keyring
admin socket = ${run_dir}/$cluster-$type.$id.asok
debug ms = 0/5
public network = "10.0.0.0/24"   # quoted
escaped = a\;b\#c
continued = alpha \
    beta

[client]
    rbd cache = true
    rbd cache size = 32M
    rbd cache max dirty = 134217728
    rbd cache writethrough until flush = true
    log file = /var/log/qemu/qemu-guest-$name.log

[client.cinder]
keyring = /etc/ceph/client.cinder.keyring

[client.cinder-backup]
keyring = /etc/ceph/client.cinder-backup.keyring

[client.glance]
	key = AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==
	caps mon = "allow r"
	caps osd = "allow rwx pool=images"

[osd]
osd data = /var/lib/ceph/osd/$cluster-$id
osd journal size = 1024

[osd.3]
host = storage3

[mon.a]
mon addr = 10.0.0.1:6789
"#;

    /// (entity, key, what `ceph-conf --lookup` printed).
    const GOLDEN: &[(&str, &str, Option<&str>)] = &[
        ("client.cinder", "fsid", Some("457eb676-33da-42ec-9a8c-9293d545c337")),
        ("client.cinder", "mon_host", Some("9.115.251.194,9.115.251.195,9.115.251.218")),
        ("client.cinder", "mon host", Some("9.115.251.194,9.115.251.195,9.115.251.218")),
        ("client.cinder", "mon_initial_members", Some("ceph1, ceph2, ceph3")),
        ("client.cinder", "auth_client_required", Some("cephx")),
        ("client.cinder", "host", Some("node1")),
        ("client.cinder", "run_dir", Some("/run/ceph")),
        ("client.cinder", "log_file", Some("/var/log/qemu/qemu-guest-client.cinder.log")),
        ("client.cinder", "keyring", Some("/etc/ceph/client.cinder.keyring")),
        ("client.cinder", "admin_socket", Some("/run/ceph/ceph-client.cinder.asok")),
        ("client.cinder", "debug_ms", Some("0/5")),
        ("client.cinder", "public_network", Some("10.0.0.0/24")),
        ("client.cinder", "escaped", Some("a;b#c")),
        ("client.cinder", "continued", Some("alpha     beta")),
        ("client.cinder", "rbd_cache", Some("true")),
        ("client.cinder", "rbd_cache_size", Some("32M")),
        ("client.cinder", "caps mon", None),
        ("client.cinder", "caps_osd", None),
        ("client.cinder", "key", None),
        ("client.cinder", "osd_data", None),
        ("client.cinder", "osd_journal_size", None),
        ("client.cinder", "mon_addr", None),
        ("client.cinder", "nosuch", None),
        ("client.cinder-backup", "host", Some("node1")),
        ("client.cinder-backup", "log_file", Some("/var/log/qemu/qemu-guest-client.cinder-backup.log")),
        ("client.cinder-backup", "keyring", Some("/etc/ceph/client.cinder-backup.keyring")),
        ("client.cinder-backup", "admin_socket", Some("/run/ceph/ceph-client.cinder-backup.asok")),
        ("client.cinder-backup", "rbd_cache", Some("true")),
        ("client.cinder-backup", "rbd_cache_size", Some("32M")),
        ("client.cinder-backup", "key", None),
        ("client.cinder-backup", "osd_data", None),
        ("client.glance", "host", Some("node1")),
        ("client.glance", "log_file", Some("/var/log/qemu/qemu-guest-client.glance.log")),
        ("client.glance", "keyring", Some("/etc/ceph/ceph.client.glance.keyring")),
        ("client.glance", "admin_socket", Some("/run/ceph/ceph-client.glance.asok")),
        ("client.glance", "rbd_cache", Some("true")),
        ("client.glance", "rbd_cache_size", Some("32M")),
        ("client.glance", "caps mon", Some("allow r")),
        ("client.glance", "caps_osd", Some("allow rwx pool=images")),
        ("client.glance", "key", Some("AQC+3IVc37ZBEhAAS/F/FgSoGn5xYsclBs8bQg==")),
        ("client.glance", "osd_data", None),
        ("client.glance", "mon_addr", None),
        ("client.admin", "host", Some("node1")),
        ("client.admin", "log_file", Some("/var/log/qemu/qemu-guest-client.admin.log")),
        ("client.admin", "keyring", Some("/etc/ceph/ceph.client.admin.keyring")),
        ("client.admin", "admin_socket", Some("/run/ceph/ceph-client.admin.asok")),
        ("client.admin", "rbd_cache", Some("true")),
        ("client.admin", "rbd_cache_size", Some("32M")),
        ("client.admin", "caps mon", None),
        ("client.admin", "key", None),
        ("client.admin", "osd_journal_size", None),
        ("osd.3", "host", Some("storage3")),
        ("osd.3", "log_file", Some("/var/log/ceph/osd.3-on-storage3.log")),
        ("osd.3", "keyring", Some("/etc/ceph/ceph.osd.3.keyring")),
        ("osd.3", "admin_socket", Some("/run/ceph/ceph-osd.3.asok")),
        ("osd.3", "rbd_cache", None),
        ("osd.3", "rbd_cache_size", None),
        ("osd.3", "caps mon", None),
        ("osd.3", "key", None),
        ("osd.3", "osd_data", Some("/var/lib/ceph/osd/ceph-3")),
        ("osd.3", "osd_journal_size", Some("1024")),
        ("osd.3", "mon_addr", None),
        ("osd.7", "host", Some("node1")),
        ("osd.7", "log_file", Some("/var/log/ceph/osd.7-on-node1.log")),
        ("osd.7", "keyring", Some("/etc/ceph/ceph.osd.7.keyring")),
        ("osd.7", "admin_socket", Some("/run/ceph/ceph-osd.7.asok")),
        ("osd.7", "rbd_cache", None),
        ("osd.7", "osd_data", Some("/var/lib/ceph/osd/ceph-7")),
        ("osd.7", "osd_journal_size", Some("1024")),
        ("mon.a", "host", Some("node1")),
        ("mon.a", "log_file", Some("/var/log/ceph/mon.a-on-node1.log")),
        ("mon.a", "keyring", Some("/etc/ceph/ceph.mon.a.keyring")),
        ("mon.a", "admin_socket", Some("/run/ceph/ceph-mon.a.asok")),
        ("mon.a", "rbd_cache", None),
        ("mon.a", "caps mon", None),
        ("mon.a", "osd_data", None),
        ("mon.a", "osd_journal_size", None),
        ("mon.a", "mon_addr", Some("10.0.0.1:6789")),
    ];

    #[test]
    fn golden_ceph_conf_lookups() {
        let dir = TempDir::new("golden");
        let c = Conf::load(&dir.write("ceph.conf", GOLDEN_CONF.as_bytes())).expect("load");
        assert_eq!(c.cluster(), "ceph");
        for &(entity, key, want) in GOLDEN {
            assert_eq!(c.get(entity, key).as_deref(), want, "{entity} {key}");
        }
        // And the fixture survives a write/read cycle.
        assert_eq!(conf(&c.to_string()).sections(), c.sections());
    }
}

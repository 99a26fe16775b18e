//! Ceph capability strings (`caps osd = "allow rwx pool=images"`): parsers and evaluators for the
//! OSD and mon grammars, following Ceph's `OSDCap` / `MonCap` semantics.
//!
//! Both grammars are comma (or `;`) separated grants. An empty cap string grants nothing.
//! Errors are EINVAL `bad osd cap at <byte>: <reason>`; features Cairn parses but refuses
//! (`network <cidr>`, `auid <n>`, `with <arg> regex <re>`) are EOPNOTSUPP with the same shape.
//! Profile names Ceph does not define parse and grant nothing, exactly as in Ceph.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use cairn_types::{errno, Error, Result};

/// Longest cap string accepted.
pub const MAX_CAPS_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------- tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Unquoted word: `[A-Za-z0-9_./:*\[\]-]+`.
    Word(String),
    Quoted(String),
    Eq,
    /// `,` or `;`.
    Sep,
}

struct Parser {
    kind: &'static str,
    toks: Vec<(usize, Tok)>,
    i: usize,
    end: usize,
}

impl Parser {
    fn new(kind: &'static str, text: &str) -> Result<Self> {
        let bad = |pos: usize, reason: String| Error::einval(format!("bad {kind} cap at {pos}: {reason}"));
        if text.len() > MAX_CAPS_BYTES {
            return Err(bad(MAX_CAPS_BYTES, format!("caps longer than {MAX_CAPS_BYTES} bytes")));
        }
        let is_word = |c: char| c.is_ascii_alphanumeric() || "_./:*[]-".contains(c);
        let mut toks = Vec::new();
        let mut it = text.char_indices().peekable();
        while let Some((pos, c)) = it.next() {
            let tok = match c {
                ' ' | '\t' | '\n' | '\r' => continue,
                '=' => Tok::Eq,
                ',' | ';' => Tok::Sep,
                '"' | '\'' => {
                    let body = &text[pos + 1..];
                    let len = body.find(c).ok_or_else(|| bad(pos, format!("unterminated {c}")))?;
                    while it.next_if(|&(i, _)| i <= pos + 1 + len).is_some() {}
                    Tok::Quoted(body[..len].to_string())
                }
                c if is_word(c) => {
                    let mut w = String::from(c);
                    while let Some((_, c)) = it.next_if(|&(_, c)| is_word(c)) {
                        w.push(c);
                    }
                    Tok::Word(w)
                }
                c => return Err(bad(pos, format!("unexpected character {c:?}"))),
            };
            toks.push((pos, tok));
        }
        Ok(Parser { kind, toks, i: 0, end: text.len() })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |(p, _)| *p)
    }

    fn err(&self, reason: impl fmt::Display) -> Error {
        Error::einval(format!("bad {} cap at {}: {reason}", self.kind, self.pos()))
    }

    fn unsupported(&self, reason: &str) -> Error {
        Error::new(errno::EOPNOTSUPP, format!("unsupported {} cap at {}: {reason}", self.kind, self.pos()))
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        let hit = self.peek_word(w);
        self.i += hit as usize;
        hit
    }

    fn eat(&mut self, t: &Tok) -> bool {
        let hit = self.peek() == Some(t);
        self.i += hit as usize;
        hit
    }

    /// A word or quoted string; `allow_empty` only for namespaces (`namespace=""`).
    fn string(&mut self, what: &str, allow_empty: bool) -> Result<String> {
        match self.peek() {
            Some(Tok::Word(s)) | Some(Tok::Quoted(s)) if allow_empty || !s.is_empty() => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.err(format!("expected {what}"))),
        }
    }

    fn no_network(&self) -> Result<()> {
        match self.peek_word("network") {
            true => Err(self.unsupported("network-restricted grants are not supported")),
            false => Ok(()),
        }
    }

    /// `grant ((',' | ';') grant)*`, or nothing at all.
    fn list<G>(mut self, mut grant: impl FnMut(&mut Self) -> Result<G>) -> Result<Vec<G>> {
        let mut out = Vec::new();
        while self.peek().is_some() {
            out.push(grant(&mut self)?);
            if self.peek().is_some() && !self.eat(&Tok::Sep) {
                return Err(self.err(format!("unexpected {}; expected ',' between grants", self.describe())));
            }
        }
        Ok(out)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Some(Tok::Word(w)) => format!("'{w}'"),
            Some(Tok::Quoted(w)) => format!("\"{w}\""),
            Some(Tok::Eq) => "'='".into(),
            Some(Tok::Sep) => "','".into(),
            None => "end of caps".into(),
        }
    }
}

/// `r`, `w`, `x` and their ordered combinations, as Ceph's `r || w || x` rule accepts them.
fn rwx_bits(w: &str, r: u8, wr: u8, x: u8) -> Option<u8> {
    let bits = match w {
        "r" => r,
        "w" => wr,
        "x" => x,
        "rw" => r | wr,
        "rx" => r | x,
        "wx" => wr | x,
        "rwx" => r | wr | x,
        _ => return None,
    };
    Some(bits)
}

// ---------------------------------------------------------------- OSD caps

const OSD_R: u8 = 1;
const OSD_W: u8 = 2;
const OSD_CLS_R: u8 = 4;
const OSD_CLS_W: u8 = 8;
const OSD_X: u8 = OSD_CLS_R | OSD_CLS_W;
const OSD_ANY: u8 = 0xff;
const MATCH_KEYWORDS: [&str; 6] = ["pool", "namespace", "object_prefix", "tag", "auid", "network"];

/// One object-class method call, as the OSD knows it from the class registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassCall<'a> {
    pub class: &'a str,
    pub method: &'a str,
    /// The method reads object state (Ceph's `CLS_METHOD_RD`).
    pub reads: bool,
    /// The method changes object state (Ceph's `CLS_METHOD_WR`).
    pub writes: bool,
}

/// What an OSD op needs: plain reads, plain writes, and at most one class method call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OsdAccess<'a> {
    pub read: bool,
    pub write: bool,
    pub call: Option<ClassCall<'a>>,
}

impl<'a> OsdAccess<'a> {
    pub const READ: OsdAccess<'static> = OsdAccess { read: true, write: false, call: None };
    pub const WRITE: OsdAccess<'static> = OsdAccess { read: false, write: true, call: None };
    pub const READ_WRITE: OsdAccess<'static> = OsdAccess { read: true, write: true, call: None };

    pub fn call(class: &'a str, method: &'a str, reads: bool, writes: bool) -> Self {
        OsdAccess { read: false, write: false, call: Some(ClassCall { class, method, reads, writes }) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum OsdSpec {
    Perm(u8),
    Class { name: String, method: Option<String> },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct OsdMatch {
    pool: Option<String>,
    /// A trailing `*` matches any namespace with that prefix.
    namespace: Option<String>,
    object_prefix: Option<String>,
    /// `tag <application> <key>=<value>`: parsed, never matches (pool application metadata is not
    /// part of the evaluation).
    tag: Option<(String, String, String)>,
}

impl OsdMatch {
    fn matches(&self, pool: &str, ns: &str, object: &str) -> bool {
        self.pool.as_ref().is_none_or(|p| p == pool)
            && self
                .namespace
                .as_ref()
                .is_none_or(|n| n == ns || n.strip_suffix('*').is_some_and(|p| ns.starts_with(p)))
            && self.object_prefix.as_ref().is_none_or(|p| object.starts_with(p.as_str()))
            && self.tag.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OsdGrant {
    spec: OsdSpec,
    m: OsdMatch,
}

impl OsdGrant {
    /// Ceph's `OSDCapGrant::is_capable` for a non-profile grant.
    fn allows(&self, pool: &str, ns: &str, object: &str, a: &OsdAccess) -> bool {
        if !self.m.matches(pool, ns, object) {
            return false;
        }
        let bits = match &self.spec {
            OsdSpec::Perm(b) => *b,
            OsdSpec::Class { .. } => 0,
        };
        if (a.read && bits & OSD_R == 0) || (a.write && bits & OSD_W == 0) {
            return false;
        }
        let Some(call) = a.call else { return true };
        if bits == OSD_ANY {
            return true;
        }
        if let OsdSpec::Class { name, method } = &self.spec {
            if name == call.class && method.as_ref().is_none_or(|m| m == call.method) {
                return true;
            }
        }
        !((call.reads && bits & OSD_CLS_R == 0) || (call.writes && bits & OSD_CLS_W == 0))
    }
}

/// Parsed OSD caps. Profiles are expanded at parse time; the original text is kept for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdCaps {
    text: String,
    grants: Vec<OsdGrant>,
}

impl OsdCaps {
    pub fn parse(text: &str) -> Result<Self> {
        let grants = Parser::new("osd", text)?.list(osd_grant)?.into_iter().flatten().collect();
        Ok(OsdCaps { text: text.to_string(), grants })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Ceph's `OSDCap::is_capable`: some grant matches the pool, namespace and object and allows
    /// the access.
    pub fn allows(&self, pool_name: &str, namespace: &str, object: &str, access: OsdAccess) -> bool {
        self.grants.iter().any(|g| g.allows(pool_name, namespace, object, &access))
    }
}

impl FromStr for OsdCaps {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for OsdCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn osd_grant(p: &mut Parser) -> Result<Vec<OsdGrant>> {
    let allow = p.eat_word("allow");
    let grants = if p.eat_word("profile") {
        p.eat(&Tok::Eq);
        let name = p.string("profile name", false)?;
        let m = osd_match(p, false)?;
        osd_profile(&name, m)
    } else if allow {
        // `allow <spec> [<match>]` or `allow <match> <spec>`.
        let first = osd_match(p, true)?;
        let spec = osd_spec(p)?;
        let m = if first == OsdMatch::default() { osd_match(p, true)? } else { first };
        vec![OsdGrant { spec, m }]
    } else {
        return Err(p.err("expected 'allow' or 'profile'"));
    };
    p.no_network()?;
    Ok(grants)
}

fn osd_spec(p: &mut Parser) -> Result<OsdSpec> {
    if p.eat_word("*") || p.eat_word("all") {
        return Ok(OsdSpec::Perm(OSD_ANY));
    }
    if p.eat_word("class") {
        let name = p.string("class name", false)?;
        let method = match p.peek() {
            Some(Tok::Word(w)) if !MATCH_KEYWORDS.contains(&w.as_str()) => Some(p.string("method", false)?),
            Some(Tok::Quoted(_)) => Some(p.string("method", false)?),
            _ => None,
        };
        return Ok(OsdSpec::Class { name, method });
    }
    let mut bits = 0;
    if let Some(b) = match p.peek() {
        Some(Tok::Word(w)) => rwx_bits(w, OSD_R, OSD_W, OSD_X),
        _ => None,
    } {
        bits = b;
        p.i += 1;
    }
    loop {
        if p.eat_word("class-read") {
            bits |= OSD_CLS_R;
        } else if p.eat_word("class-write") {
            bits |= OSD_CLS_W;
        } else {
            break;
        }
    }
    match bits {
        0 => Err(p.err(format!(
            "unexpected {}; expected r, w, x, *, class-read, class-write or class <name>",
            p.describe()
        ))),
        _ => Ok(OsdSpec::Perm(bits)),
    }
}

/// `[pool[=]<name>] [namespace[=]<ns>] [tag <app> <key>=<value> | object_prefix <prefix>]`;
/// profiles take only the pool and namespace.
fn osd_match(p: &mut Parser, full: bool) -> Result<OsdMatch> {
    let mut m = OsdMatch::default();
    if p.peek_word("auid") {
        return Err(p.unsupported("auid grants are not supported (Ceph removed them)"));
    }
    if p.eat_word("pool") {
        p.eat(&Tok::Eq);
        m.pool = Some(p.string("pool name", false)?);
    }
    if p.eat_word("namespace") {
        p.eat(&Tok::Eq);
        m.namespace = Some(p.string("namespace", true)?);
    }
    if !full {
        return Ok(m);
    }
    if p.eat_word("tag") {
        let app = p.string("application name", false)?;
        let key = p.string("tag key", false)?;
        if !p.eat(&Tok::Eq) {
            return Err(p.err("expected '=' in tag <application> <key>=<value>"));
        }
        m.tag = Some((app, key, p.string("tag value", false)?));
    } else if p.eat_word("object_prefix") {
        p.eat(&Tok::Eq);
        m.object_prefix = Some(p.string("object prefix", false)?);
    }
    Ok(m)
}

/// Ceph's `OSDCapGrant::expand_profile`.
fn osd_profile(name: &str, pool_ns: OsdMatch) -> Vec<OsdGrant> {
    let grant = |bits: u8, m: &OsdMatch| OsdGrant { spec: OsdSpec::Perm(bits), m: m.clone() };
    let prefix = |m: &OsdMatch, p: &str| OsdMatch { object_prefix: Some(p.into()), ..m.clone() };
    let any_pool = OsdMatch::default();
    match name {
        "read-only" => vec![grant(OSD_R, &pool_ns)],
        "read-write" => vec![grant(OSD_R | OSD_W, &pool_ns)],
        "rbd" => vec![
            grant(OSD_CLS_R, &prefix(&any_pool, "rbd_children")),
            grant(OSD_CLS_R, &prefix(&any_pool, "rbd_mirroring")),
            grant(OSD_R | OSD_W | OSD_X, &pool_ns),
        ],
        "rbd-read-only" => {
            let header = prefix(&pool_ns, "rbd_header.");
            let class = |method: &str| OsdGrant {
                spec: OsdSpec::Class { name: "rbd".into(), method: Some(method.into()) },
                m: header.clone(),
            };
            vec![grant(OSD_R | OSD_CLS_R, &pool_ns), class("child_attach"), class("child_detach")]
        }
        _ => vec![],
    }
}

// ---------------------------------------------------------------- mon caps

const MON_R: u8 = 1;
const MON_W: u8 = 2;
const MON_X: u8 = 4;
const MON_ALL: u8 = MON_R | MON_W | MON_X;
const MON_ANY: u8 = 0xff;

/// What a mon request needs on its service (`osd`, `mon`, `auth`, `pg`, `config-key`…).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonAccess {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StrMatch {
    Equal(String),
    Prefix(String),
    /// `<addr>/<nonce>`: Ceph's `^[^/]+/[0-9]+$` in `profile rbd`'s blocklist grant.
    AddrWithNonce,
}

impl StrMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            StrMatch::Equal(s) => v == s,
            StrMatch::Prefix(s) => v.starts_with(s.as_str()),
            StrMatch::AddrWithNonce => v.split_once('/').is_some_and(|(a, n)| {
                !a.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MonGrant {
    /// `allow r|w|x|*` on every service except `config-key` (which needs `allow *`).
    Allow(u8),
    Service {
        service: String,
        allow: u8,
    },
    Command {
        command: String,
        args: BTreeMap<String, StrMatch>,
    },
    Profile {
        name: String,
        grants: Vec<MonGrant>,
    },
}

impl MonGrant {
    /// Ceph's `MonCapGrant::get_allowed`.
    fn allowed(&self, service: &str, command: &str, args: &BTreeMap<String, String>) -> u8 {
        match self {
            MonGrant::Allow(_) if service == "config-key" => 0,
            MonGrant::Allow(a) => *a,
            MonGrant::Service { service: s, allow } if s == service => *allow,
            MonGrant::Command { command: c, args: want }
                if c == command && want.iter().all(|(k, m)| args.get(k).is_some_and(|v| m.matches(v))) =>
            {
                MON_ALL
            }
            MonGrant::Service { .. } | MonGrant::Command { .. } => 0,
            MonGrant::Profile { grants, .. } => {
                grants.iter().fold(0, |a, g| a | g.allowed(service, command, args))
            }
        }
    }
}

/// Parsed mon caps; the original text is kept for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonCaps {
    text: String,
    grants: Vec<MonGrant>,
}

impl MonCaps {
    pub fn parse(text: &str) -> Result<Self> {
        let grants = Parser::new("mon", text)?.list(mon_grant)?;
        Ok(MonCaps { text: text.to_string(), grants })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Ceph's `MonCap::is_capable`: `allow *` passes everything; otherwise the permissions granted
    /// to `service` / `command` by all grants together must cover `access`.
    pub fn is_capable(
        &self,
        service: &str,
        command: &str,
        args: &BTreeMap<String, String>,
        access: MonAccess,
    ) -> bool {
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        let need = bit(access.read, MON_R) | bit(access.write, MON_W) | bit(access.exec, MON_X);
        let mut allow = 0;
        for g in &self.grants {
            if *g == MonGrant::Allow(MON_ANY) {
                return true;
            }
            allow |= g.allowed(service, command, args);
            if allow & need == need {
                return true;
            }
        }
        false
    }

    /// A mon command by its JSON `prefix` and string arguments: read-only commands need `r` on
    /// the command's service, changing ones `rw`; `auth …` commands also need `x` (as in Ceph);
    /// an `allow command` grant whose prefix and `with` arguments match allows it outright.
    pub fn allows_command(&self, prefix: &str, args: &BTreeMap<String, String>, writes: bool) -> bool {
        let service = command_service(prefix);
        self.is_capable(
            service,
            prefix,
            args,
            MonAccess { read: true, write: writes, exec: service == "auth" },
        )
    }
}

/// The service (Ceph's command "module") a mon command belongs to: its first word when that is
/// a service name, else `mon` (`status`, `health`, `df`, `quorum_status` …).
pub fn command_service(prefix: &str) -> &str {
    match prefix.split_whitespace().next().unwrap_or("") {
        s @ ("osd" | "pg" | "auth" | "mon" | "mgr" | "log" | "config-key" | "config" | "mds" | "fs") => s,
        _ => "mon",
    }
}

impl FromStr for MonCaps {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for MonCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn mon_grant(p: &mut Parser) -> Result<MonGrant> {
    let allow = p.eat_word("allow");
    let g = if p.eat_word("profile") {
        p.eat(&Tok::Eq);
        let name = p.string("profile name", false)?;
        MonGrant::Profile { grants: mon_profile(&name), name }
    } else if !allow {
        return Err(p.err("expected 'allow' or 'profile'"));
    } else if p.eat_word("service") {
        p.eat(&Tok::Eq);
        let service = p.string("service name", false)?;
        MonGrant::Service { service, allow: mon_rwxa(p)? }
    } else if p.eat_word("command") {
        p.eat(&Tok::Eq);
        let command = p.string("command", false)?;
        let mut args = BTreeMap::new();
        if p.eat_word("with") {
            loop {
                let key = p.string("argument name", false)?;
                let m = if p.eat(&Tok::Eq) {
                    StrMatch::Equal(p.string("argument value", false)?)
                } else if p.eat_word("prefix") {
                    StrMatch::Prefix(p.string("argument prefix", false)?)
                } else if p.peek_word("regex") {
                    return Err(p.unsupported("regex argument constraints are not supported"));
                } else {
                    return Err(p.err("expected '=' or 'prefix' after the argument name"));
                };
                args.insert(key, m);
                if matches!(p.peek(), None | Some(Tok::Sep)) || p.peek_word("network") {
                    break;
                }
            }
        }
        MonGrant::Command { command, args }
    } else {
        MonGrant::Allow(mon_rwxa(p)?)
    };
    p.no_network()?;
    Ok(g)
}

fn mon_rwxa(p: &mut Parser) -> Result<u8> {
    let bits = match p.peek() {
        Some(Tok::Word(w)) if w == "*" || w == "all" => Some(MON_ANY),
        Some(Tok::Word(w)) => rwx_bits(w, MON_R, MON_W, MON_X),
        _ => None,
    };
    p.i += bits.is_some() as usize;
    bits.ok_or_else(|| p.err(format!("unexpected {}; expected r, w, x or *", p.describe())))
}

/// Ceph's `MonCapGrant::expand_profile` as the mon evaluates it. The per-daemon
/// `config-key get daemon-private/<name>/…` grants of the daemon profiles are left out.
fn mon_profile(name: &str) -> Vec<MonGrant> {
    let svc = |s: &str, allow: u8| MonGrant::Service { service: s.into(), allow };
    let cmd = |c: &str| MonGrant::Command { command: c.into(), args: BTreeMap::new() };
    let blocklist = |c: &str, op_arg: &str| MonGrant::Command {
        command: c.into(),
        args: [(op_arg.into(), StrMatch::Equal("add".into())), ("addr".into(), StrMatch::AddrWithNonce)]
            .into(),
    };
    let (r, rw) = (MON_R, MON_R | MON_W);
    match name {
        "read-only" => vec![MonGrant::Allow(r)],
        "read-write" => vec![MonGrant::Allow(rw)],
        "mon" => vec![svc("mon", MON_ALL), svc("log", MON_ALL)],
        "osd" => vec![svc("osd", MON_ALL), svc("mon", r), svc("pg", rw), svc("log", MON_W)],
        "mgr" => vec![
            svc("mgr", MON_ALL),
            svc("log", rw),
            svc("mon", rw),
            svc("mds", rw),
            svc("fs", rw),
            svc("osd", rw),
            svc("auth", r | MON_X),
            svc("config-key", rw),
            svc("config", rw),
        ],
        "bootstrap-osd" => {
            vec![svc("mon", r), svc("osd", r), cmd("mon getmap"), cmd("osd new"), cmd("osd purge-new")]
        }
        "simple-rados-client" => vec![svc("mon", r), svc("osd", r), svc("pg", r)],
        "rbd" => vec![
            svc("mon", r),
            svc("osd", r),
            svc("pg", r),
            blocklist("osd blocklist", "blocklistop"),
            blocklist("osd blacklist", "blacklistop"),
        ],
        "role-definer" => vec![svc("mon", r), svc("auth", MON_ALL)],
        _ => vec![],
    }
}

/// Checks a cap string the way `auth get-or-create` / `auth caps` must before storing it: `mon`
/// and `osd` caps with their grammar; other services (`mgr`, `mds`) are stored unchecked.
pub fn validate(service: &str, text: &str) -> Result<()> {
    match service {
        "mon" => MonCaps::parse(text).map(drop),
        "osd" => OsdCaps::parse(text).map(drop),
        _ if text.len() > MAX_CAPS_BYTES => Err(Error::einval(format!("{service} caps too long"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every cap string in the seed guides.
    const SEED_OSD_CAPS: &[&str] = &[
        "allow class-read object_prefix rbd_children, allow rwx pool=images",
        "allow class-read object_prefix rbd_children, allow rwx pool=backups",
        "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rwx pool=vms, allow rwx pool=images",
        "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rwx pool=vms, allow rx pool=images",
        "allow class-read object_prefix rbd_children, allow rwx pool=volumes, allow rx pool=images",
        "allow rwx pool=images",
        "allow rwx pool=volume",
        "allow rwx pool=volume, allow rwx pool=backups",
        "allow rwx pool=vm",
    ];

    fn osd(s: &str) -> OsdCaps {
        OsdCaps::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.message))
    }

    fn mon(s: &str) -> MonCaps {
        MonCaps::parse(s).unwrap_or_else(|e| panic!("{s}: {}", e.message))
    }

    fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const CHILD_LIST: OsdAccess = OsdAccess {
        read: false,
        write: false,
        call: Some(ClassCall { class: "rbd", method: "get_children", reads: true, writes: false }),
    };
    const CHILD_ADD: OsdAccess = OsdAccess {
        read: false,
        write: false,
        call: Some(ClassCall { class: "rbd", method: "add_child", reads: true, writes: true }),
    };

    #[test]
    fn seed_caps_parse() {
        for s in SEED_OSD_CAPS {
            assert_eq!(osd(s).to_string(), *s);
            validate("osd", s).unwrap();
        }
        assert_eq!(mon("allow r").as_str(), "allow r");
    }

    #[test]
    fn glance_caps() {
        let c = osd(SEED_OSD_CAPS[0]);
        assert!(c.allows("images", "", "rbd_data.1234.0000000000000000", OsdAccess::WRITE));
        assert!(c.allows("images", "", "rbd_header.1234", OsdAccess::READ_WRITE));
        assert!(c.allows("images", "", "rbd_header.1234", CHILD_ADD));
        assert!(!c.allows("volumes", "", "rbd_data.1234.0000000000000000", OsdAccess::WRITE));
        assert!(!c.allows("volumes", "", "rbd_data.1234.0000000000000000", OsdAccess::READ));
        // class-read on rbd_children in any pool, and only on that prefix.
        assert!(c.allows("volumes", "", "rbd_children", CHILD_LIST));
        assert!(!c.allows("volumes", "", "rbd_children", CHILD_ADD));
        assert!(!c.allows("volumes", "", "rbd_directory", CHILD_LIST));
        assert!(!c.allows("volumes", "", "rbd_children", OsdAccess::READ));
    }

    #[test]
    fn read_only_pool_and_profiles() {
        let c = osd(SEED_OSD_CAPS[3]);
        assert!(c.allows("images", "", "obj", OsdAccess::READ));
        assert!(c.allows("images", "", "rbd_header.1", CHILD_LIST));
        assert!(!c.allows("images", "", "obj", OsdAccess::WRITE));
        // Ceph's `x` is class-read + class-write, so `rx` still runs writing class methods.
        assert!(c.allows("images", "", "rbd_header.1", CHILD_ADD));
        assert!(c.allows("vms", "", "obj", OsdAccess::READ_WRITE));

        let rbd = osd("profile rbd pool=volumes");
        assert!(rbd.allows("volumes", "", "rbd_data.x.0", OsdAccess::READ_WRITE));
        assert!(rbd.allows("volumes", "", "rbd_header.x", CHILD_ADD));
        assert!(!rbd.allows("images", "", "rbd_data.x.0", OsdAccess::READ));
        assert!(rbd.allows("images", "", "rbd_children", CHILD_LIST));
        assert!(osd("profile rbd").allows("anything", "ns", "o", OsdAccess::READ_WRITE));

        let ro = osd("profile rbd-read-only pool=images");
        assert!(ro.allows("images", "", "rbd_data.x.0", OsdAccess::READ));
        assert!(ro.allows("images", "", "rbd_header.x", CHILD_LIST));
        assert!(!ro.allows("images", "", "rbd_data.x.0", OsdAccess::WRITE));
        assert!(!ro.allows("images", "", "rbd_directory", CHILD_ADD));
        let attach = OsdAccess::call("rbd", "child_attach", true, true);
        assert!(ro.allows("images", "", "rbd_header.x", attach));
        assert!(!ro.allows("images", "", "rbd_id.x", attach));

        assert!(osd("profile read-only").allows("p", "", "o", OsdAccess::READ));
        assert!(!osd("profile read-only").allows("p", "", "o", OsdAccess::WRITE));
        assert!(osd("profile=read-write pool images").allows("images", "", "o", OsdAccess::READ_WRITE));
        // Ceph defines no osd/mon/mgr profiles for OSD caps: they parse and grant nothing.
        for p in ["profile osd", "profile mon", "profile mgr"] {
            assert!(!osd(p).allows("p", "", "o", OsdAccess::READ), "{p}");
        }
    }

    #[test]
    fn specs_and_matches() {
        let all = osd("allow *");
        assert!(all.allows("p", "n", "o", OsdAccess::READ_WRITE) && all.allows("p", "", "o", CHILD_ADD));
        assert!(osd("allow all").allows("p", "", "o", CHILD_ADD));
        let x = osd("allow x");
        assert!(x.allows("p", "", "o", CHILD_ADD) && !x.allows("p", "", "o", OsdAccess::WRITE));
        let rcr = osd("allow r class-read");
        assert!(rcr.allows("p", "", "o", OsdAccess::READ) && rcr.allows("p", "", "o", CHILD_LIST));
        assert!(!rcr.allows("p", "", "o", CHILD_ADD));
        assert!(osd("allow class-read class-write").allows("p", "", "o", CHILD_ADD));
        let cls = osd("allow class rbd");
        assert!(cls.allows("p", "", "o", CHILD_ADD));
        assert!(!cls.allows("p", "", "o", OsdAccess::call("lock", "lock", true, true)));
        assert!(!cls.allows("p", "", "o", OsdAccess::READ));
        let m = osd("allow class rbd get_children pool images");
        assert!(m.allows("images", "", "o", CHILD_LIST) && !m.allows("images", "", "o", CHILD_ADD));
        assert!(!m.allows("volumes", "", "o", CHILD_LIST));
        // Match first, then the spec; quotes of either kind.
        let mf = osd("allow pool 'images' object_prefix \"rbd_data.\" rw");
        assert!(mf.allows("images", "", "rbd_data.1", OsdAccess::WRITE));
        assert!(!mf.allows("images", "", "rbd_header.1", OsdAccess::WRITE));
        // Namespaces: exact, glob, empty; no namespace clause matches every namespace.
        let ns = osd("allow rw pool=p namespace=team*, allow r namespace=\"\"");
        assert!(ns.allows("p", "team-a", "o", OsdAccess::WRITE));
        assert!(!ns.allows("p", "other", "o", OsdAccess::READ));
        assert!(ns.allows("q", "", "o", OsdAccess::READ) && !ns.allows("q", "x", "o", OsdAccess::READ));
        assert!(osd("allow r pool=p").allows("p", "any", "o", OsdAccess::READ));
        // Tags parse but never match.
        let tag = osd("allow rw tag rbd data=*; allow r pool=x");
        assert!(!tag.allows("p", "", "o", OsdAccess::READ) && tag.allows("x", "", "o", OsdAccess::READ));
        assert!(!osd("").allows("p", "", "o", OsdAccess::READ));
    }

    #[test]
    fn osd_errors_say_where_and_why() {
        for (s, errno, msg) in [
            ("allow rwx, foo", errno::EINVAL, "bad osd cap at 11: expected 'allow' or 'profile'"),
            ("allow", errno::EINVAL, "bad osd cap at 5: unexpected end of caps; expected r, w, x, *"),
            ("allow rwq", errno::EINVAL, "bad osd cap at 6: unexpected 'rwq'"),
            ("allow rwx pool=", errno::EINVAL, "bad osd cap at 15: expected pool name"),
            (
                "allow rwx pool=images junk",
                errno::EINVAL,
                "bad osd cap at 22: unexpected 'junk'; expected ','",
            ),
            ("allow r pool=\"images", errno::EINVAL, "bad osd cap at 13: unterminated \""),
            ("allow r pool=images!", errno::EINVAL, "bad osd cap at 19: unexpected character '!'"),
            ("allow rw tag rbd data", errno::EINVAL, "bad osd cap at 21: expected '='"),
            ("allow r network 10.0.0.0/8", errno::EOPNOTSUPP, "unsupported osd cap at 8: network"),
            ("allow r auid 5", errno::EOPNOTSUPP, "unsupported osd cap at 8: auid"),
        ] {
            let e = OsdCaps::parse(s).unwrap_err();
            assert_eq!(e.errno, errno, "{s}");
            assert!(e.message.starts_with(msg), "{s}: {}", e.message);
        }
    }

    #[test]
    fn mon_basic_perms() {
        let none = BTreeMap::new();
        let r = mon("allow r");
        assert!(r.allows_command("osd pool ls", &none, false));
        assert!(r.allows_command("status", &none, false));
        assert!(!r.allows_command("osd pool create", &args(&[("pool", "x")]), true));
        assert!(!r.allows_command("auth get", &args(&[("entity", "client.x")]), false));
        assert!(!mon("allow w").allows_command("osd pool ls", &none, false));
        let rw = mon("allow rw");
        assert!(rw.allows_command("osd pool create", &none, true));
        assert!(!rw.allows_command("auth get-or-create", &none, true));
        let rwx = mon("allow rwx");
        assert!(rwx.allows_command("auth get-or-create", &none, true));
        assert!(!rwx.allows_command("config-key get", &none, false));
        let all = mon("allow *");
        assert!(
            all.allows_command("config-key set", &none, true) && all.allows_command("auth del", &none, true)
        );
        assert!(!mon("").allows_command("status", &none, false));
    }

    #[test]
    fn mon_commands_services_and_profiles() {
        let none = BTreeMap::new();
        let c = mon("allow command \"osd pool ls\", allow command \"auth get\" with entity=\"client.x\"");
        assert!(c.allows_command("osd pool ls", &none, false));
        assert!(!c.allows_command("osd pool ls detail", &none, false));
        assert!(!c.allows_command("osd pool create", &none, true));
        assert!(c.allows_command("auth get", &args(&[("entity", "client.x")]), false));
        assert!(!c.allows_command("auth get", &args(&[("entity", "client.admin")]), false));
        assert!(!c.allows_command("auth get", &none, false));
        let p = mon("allow command=\"config-key get\" with key prefix rbd/mirror/ format=json");
        assert!(p.allows_command(
            "config-key get",
            &args(&[("key", "rbd/mirror/a"), ("format", "json")]),
            false
        ));
        assert!(!p.allows_command("config-key get", &args(&[("key", "other"), ("format", "json")]), false));

        let s = mon("allow service osd rw; allow r");
        assert!(s.allows_command("osd pool create", &none, true));
        assert!(!s.allows_command("mon add", &none, true));

        let rbd = mon("profile rbd");
        assert!(rbd.allows_command("osd pool ls", &none, false));
        assert!(!rbd.allows_command("osd pool create", &none, true));
        let add = args(&[("blocklistop", "add"), ("addr", "10.0.0.1:0/3710147553")]);
        assert!(rbd.allows_command("osd blocklist", &add, true));
        assert!(!rbd.allows_command(
            "osd blocklist",
            &args(&[("blocklistop", "rm"), ("addr", "1.2.3.4:0/1")]),
            true
        ));
        assert!(!rbd.allows_command(
            "osd blocklist",
            &args(&[("blocklistop", "add"), ("addr", "1.2.3.4")]),
            true
        ));
        assert!(mon("allow profile rbd").allows_command("osd blocklist", &add, true));

        let bo = mon("allow profile bootstrap-osd");
        assert!(bo.allows_command("osd new", &none, true) && bo.allows_command("mon getmap", &none, false));
        assert!(!bo.allows_command("osd pool create", &none, true));
        let o = mon("profile osd");
        assert!(
            o.allows_command("osd pool create", &none, true) && !o.allows_command("auth ls", &none, false)
        );
        assert!(!o.allows_command("mon add", &none, true));
        let m = mon("profile mgr");
        assert!(m.allows_command("auth get", &none, false) && !m.allows_command("auth del", &none, true));
        assert!(mon("profile mon").allows_command("mon add", &none, true));
        assert!(!mon("profile nonsense").allows_command("status", &none, false));
        assert!(mon("profile read-only").is_capable(
            "osd",
            "",
            &none,
            MonAccess { read: true, ..Default::default() }
        ));
    }

    #[test]
    fn mon_errors_say_where_and_why() {
        for (s, errno, msg) in [
            ("deny r", errno::EINVAL, "bad mon cap at 0: expected 'allow' or 'profile'"),
            ("allow rq", errno::EINVAL, "bad mon cap at 6: unexpected 'rq'; expected r, w, x or *"),
            ("allow service osd", errno::EINVAL, "bad mon cap at 17: unexpected end of caps"),
            ("allow command", errno::EINVAL, "bad mon cap at 13: expected command"),
            ("allow command x with", errno::EINVAL, "bad mon cap at 20: expected argument name"),
            ("allow command x with a b", errno::EINVAL, "bad mon cap at 23: expected '=' or 'prefix'"),
            ("allow command x with a regex \"^b\"", errno::EOPNOTSUPP, "unsupported mon cap at 23: regex"),
            ("allow r network 1.2.3.0/24", errno::EOPNOTSUPP, "unsupported mon cap at 8: network"),
        ] {
            let e = MonCaps::parse(s).unwrap_err();
            assert_eq!(e.errno, errno, "{s}");
            assert!(e.message.starts_with(msg), "{s}: {}", e.message);
        }
        assert!(validate("mon", "allow rx").is_ok() && validate("mon", "allow q").is_err());
        assert!(validate("mgr", "allow module foo").is_ok());
    }

    #[test]
    fn huge_caps_are_bounded() {
        let many = vec!["allow rwx pool=images"; 2500].join(", ");
        let t = std::time::Instant::now();
        assert!(OsdCaps::parse(&many).unwrap().allows("images", "", "o", OsdAccess::WRITE));
        assert!(OsdCaps::parse(&many.repeat(2)).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }

    fn mutate(s: &str, ops: &[(usize, u8, u8)]) -> String {
        let mut b = s.as_bytes().to_vec();
        for &(i, op, c) in ops {
            let i = i % (b.len() + 1);
            match op % 3 {
                0 => b.insert(i, c),
                1 if i < b.len() => {
                    b.remove(i);
                }
                _ if i < b.len() => b[i] = c,
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&b);
            if let Ok(c) = OsdCaps::parse(&s) { c.allows("p", "", "o", CHILD_ADD); }
            if let Ok(c) = MonCaps::parse(&s) { c.allows_command("osd pool ls", &BTreeMap::new(), false); }
        }

        #[test]
        fn mutated_caps_never_panic(
            which in 0..SEED_OSD_CAPS.len(),
            ops in proptest::collection::vec((any::<usize>(), any::<u8>(), proptest::sample::select(b" ,;=\"'*rwxaclpo-_.".to_vec())), 1..6),
        ) {
            let s = mutate(SEED_OSD_CAPS[which], &ops);
            match OsdCaps::parse(&s) {
                Ok(c) => { c.allows("images", "", "rbd_children", CHILD_LIST); }
                Err(e) => prop_assert!(e.message.contains(" cap at "), "{}", e.message),
            }
            let m = mutate("allow command \"auth get\" with entity=\"client.x\", profile rbd", &ops);
            if let Err(e) = MonCaps::parse(&m) { prop_assert!(e.message.contains(" cap at ")); }
        }
    }
}

//! Raw TOML → [`Config`]: every problem is collected with its key path and line, then reported
//! together, so an operator fixes a file in one pass.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::raw::RawConfig;
use super::secrets::{expand, read_secret_file, Secret};
use super::*;

mod keys;
mod provider;
mod route;
mod server;
mod session;

/// One thing wrong (or worth a warning) in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path such as `providers.cis2.client_id` or `route[0].upstream`.
    pub key: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        // A huge key or value quoted in a message (or by the TOML parser) must not come back as
        // a line of megabytes.
        Problem {
            key: shortened(key.into(), MAX_MESSAGE),
            line,
            message: shortened(message.into(), MAX_MESSAGE),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), self.line) {
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// A list of one.
    pub fn single(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Parses and validates config text. Relative file paths are resolved against `base_dir`.
pub fn parse_str(text: &str, base_dir: Option<&Path>) -> Result<Config, Problems> {
    let lines = LineIndex::new(text);
    let spans = match toml::de::DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e.span().map(|s| lines.line_of(s.start));
            return Err(Problems::single(Problem::new(
                "",
                line,
                format!("invalid TOML: {}", e.message()),
            )));
        }
    };
    let mut unknown = Vec::new();
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        Problems::single(Problem::new(
            "",
            e.span().map(|s| lines.line_of(s.start)),
            e.message().to_owned(),
        ))
    })?;
    let raw: RawConfig = match serde_ignored::deserialize(de, |path| unknown.push(path_key(&path)))
    {
        Ok(raw) => raw,
        Err(e) => {
            // A value of the wrong type: name its key, found by where the value sits.
            let key = e
                .span()
                .and_then(|s| key_at(spans.get_ref(), s.start))
                .unwrap_or_default();
            return Err(Problems::single(Problem::new(
                &key,
                e.span().map(|s| lines.line_of(s.start)),
                e.message().to_owned(),
            )));
        }
    };
    let mut v = Validator {
        problems: Vec::new(),
        warnings: Vec::new(),
        spans: spans.into_inner(),
        lines,
        base_dir: base_dir.map(Path::to_path_buf),
    };
    for key in unknown {
        v.error(&key, "unknown key");
    }
    let config = v.config(raw);
    if v.problems.is_empty() {
        if let Some(mut config) = config {
            config.warnings = v.warnings;
            return Ok(config);
        }
    }
    Err(Problems(v.problems))
}

/// The dotted key path (`session.secure`, `route[1].headers.X-Auth-Sub`) whose value holds byte
/// `offset` of the file.
fn key_at(table: &toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    table
        .iter()
        .find_map(|(k, v)| value_key_at(v, offset).map(|rest| format!("{}{rest}", k.get_ref())))
}

fn value_key_at(value: &toml::Spanned<toml::de::DeValue<'_>>, offset: usize) -> Option<String> {
    use toml::de::DeValue;
    let inner = match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            value_key_at(v, offset).map(|rest| format!(".{}{rest}", k.get_ref()))
        }),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| value_key_at(v, offset).map(|rest| format!("[{i}]{rest}"))),
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(String::new))
}

fn path_key(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_key(parent)),
        P::Map { parent, key } => {
            let p = path_key(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_key(parent)
        }
    }
}

/// Byte offset → line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

struct Validator<'a> {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    spans: toml::de::DeTable<'a>,
    lines: LineIndex,
    base_dir: Option<PathBuf>,
}

impl Validator<'_> {
    /// The line of a dotted key path such as `route[1].headers.X-Auth-Sub`.
    fn line(&self, key: &str) -> Option<usize> {
        let mut table = &self.spans;
        let mut span = None;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let (k, value) = table.get_key_value(name)?;
            span = Some(k.span());
            let mut value = value;
            if let Some(i) = index {
                value = value.get_ref().as_array()?.get(i)?;
                span = Some(value.span());
            }
            match value.get_ref().as_table() {
                Some(t) if parts.peek().is_some() => table = t,
                _ => break,
            }
        }
        span.map(|s| self.lines.line_of(s.start))
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let line = self.line(key);
        self.problems.push(Problem::new(key, line, message));
    }

    fn warn(&mut self, key: &str, message: impl Into<String>) {
        let line = self.line(key);
        self.warnings.push(Problem::new(key, line, message));
    }

    /// `${ENV}` expansion of one string value.
    fn string(&mut self, key: &str, value: &str) -> Option<String> {
        match expand(value) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    fn opt_string(&mut self, key: &str, value: &Option<String>) -> Option<String> {
        value.as_ref().and_then(|v| self.string(key, v))
    }

    fn strings(&mut self, key: &str, values: &[String]) -> Vec<String> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.string(&format!("{key}[{i}]"), v))
            .collect()
    }

    fn path(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// A secret given inline or through its `*_file` twin (never both).
    fn secret(
        &mut self,
        key: &str,
        inline: &Option<String>,
        file_key: &str,
        file: &Option<String>,
    ) -> Option<Secret<String>> {
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error(key, format!("set either {key} or {file_key}, not both"));
                None
            }
            (Some(v), None) => {
                let s = self.string(key, v)?;
                if s.is_empty() {
                    self.error(key, "is empty");
                    return None;
                }
                Some(Secret::new(s))
            }
            (None, Some(f)) => {
                let f = self.string(file_key, f)?;
                let path = self.path(&f);
                match read_secret_file(&path.to_string_lossy()) {
                    Ok(s) if s.is_empty() => {
                        self.error(file_key, format!("{} is empty", path.display()));
                        None
                    }
                    Ok(s) => Some(Secret::new(s)),
                    Err(e) => {
                        self.error(file_key, e);
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn duration(&mut self, key: &str, value: &Option<String>, default: Duration) -> Duration {
        let Some(raw) = value else { return default };
        let Some(s) = self.string(key, raw) else {
            return default;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    key,
                    format!(
                        "{} is not a duration like \"90s\", \"30m\" or \"8h\" ({e})",
                        shown(&s)
                    ),
                );
                default
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        let s = self.string(key, value)?;
        match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    format!("{} is not an address like \"0.0.0.0:8080\"", shown(&s)),
                );
                None
            }
        }
    }

    fn count(
        &mut self,
        key: &str,
        value: Option<i64>,
        default: usize,
        range: (usize, usize),
    ) -> usize {
        let Some(n) = value else { return default };
        match usize::try_from(n) {
            Ok(n) if n >= range.0 && n <= range.1 => n,
            _ => {
                self.error(
                    key,
                    format!("must be between {} and {}, not {n}", range.0, range.1),
                );
                default
            }
        }
    }

    /// An http(s) URL; plain http only on loopback unless `allow_insecure`.
    fn url(&mut self, key: &str, value: &str, allow_insecure: bool, hint: &str) -> Option<Url> {
        let s = self.string(key, value)?;
        match Url::parse(&s) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {
                if allow_insecure || is_loopback_url(&u) {
                    Some(u)
                } else {
                    self.error(
                        key,
                        format!("{} uses http:// on a non-loopback host; use https:// or set {hint}allow_insecure_http = true", shown(&s)),
                    );
                    None
                }
            }
            Ok(_) => {
                self.error(key, format!("{} is not an http(s) URL", shown(&s)));
                None
            }
            Err(e) => {
                self.error(key, format!("{} is not a URL: {e}", shown(&s)));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(&raw);
        let admin = AdminConfig {
            listen: raw
                .admin
                .listen
                .as_ref()
                .and_then(|l| self.socket_addr("admin.listen", l)),
        };
        let session = self.session(&raw, server.as_ref());
        let names: Vec<String> = raw.providers.keys().cloned().collect();
        let providers: Vec<Option<ProviderConfig>> = raw
            .providers
            .iter()
            .map(|(name, p)| self.provider(name, p))
            .collect();
        if raw.providers.is_empty() {
            self.error(
                "providers",
                "at least one provider is needed ([providers.NAME])",
            );
        }
        if raw.route.is_empty() {
            self.error("route", "at least one route is needed ([[route]])");
        }
        let routes: Vec<Option<RouteConfig>> = raw
            .route
            .iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r, &names))
            .collect();
        let fold_case = server.as_ref().is_some_and(|s| s.case_insensitive_paths);
        self.check_route_overlap(&routes, fold_case);
        self.check_route_needs(&raw);
        let server = server?;
        let session = session?;
        let providers = providers
            .into_iter()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(Arc::new)
            .collect();
        let routes = routes
            .into_iter()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(Arc::new)
            .collect();
        Some(Config {
            server,
            admin,
            session,
            providers,
            routes,
            warnings: Vec::new(),
        })
    }
}

fn is_loopback_url(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;

/// The longest problem message; a longer one (a huge value quoted in it) is cut.
const MAX_MESSAGE: usize = 1024;

/// A value as problem messages quote it: whole when short, else its start and its length, so
/// a 10 MB value does not come back as a 10 MB line.
fn shown(value: &str) -> String {
    const SHOWN: usize = 64;
    if value.len() <= SHOWN {
        return format!("{value:?}");
    }
    let mut end = SHOWN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &value[..end], value.len())
}

/// `message` cut to about `max` bytes (on a character boundary), saying so.
fn shortened(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (shortened)");
    }
    message
}

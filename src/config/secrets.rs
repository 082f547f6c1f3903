//! `${ENV_VAR}` interpolation, `*_file` twins, and a wrapper that keeps secrets out of logs.

use std::fmt;

/// A value that must never be printed: its `Debug` and `Display` say `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a string could not be expanded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpandError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("unterminated ${{...}} reference")]
    Unterminated,
    #[error("empty ${{}} reference")]
    Empty,
}

/// Replaces every `${NAME}` in `input` with the value of the environment variable `NAME`, as read
/// by `lookup`. `$$` stands for a literal `$`. A `$` not followed by `{` or `$` is kept.
pub fn expand_with(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let end = tail.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &tail[..end];
            if name.is_empty() {
                return Err(ExpandError::Empty);
            }
            let value = lookup(name).ok_or_else(|| ExpandError::Unset(name.to_owned()))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// [`expand_with`] over the process environment.
pub fn expand(input: &str) -> Result<String, ExpandError> {
    expand_with(input, |name| std::env::var(name).ok())
}

/// Reads a secret file (systemd `LoadCredential=` style); one trailing newline is dropped.
pub fn read_secret_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_and_keeps_the_rest() {
        assert_eq!(expand_with("a-${KEY}-b", env).as_deref(), Ok("a-s3cret-b"));
        assert_eq!(expand_with("${EMPTY}x", env).as_deref(), Ok("x"));
        assert_eq!(
            expand_with("cost $5 and $$", env).as_deref(),
            Ok("cost $5 and $")
        );
    }

    #[test]
    fn reports_unset_and_malformed_references() {
        assert_eq!(
            expand_with("${NOPE}", env),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert_eq!(expand_with("${KEY", env), Err(ExpandError::Unterminated));
        assert_eq!(expand_with("${}", env), Err(ExpandError::Empty));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}

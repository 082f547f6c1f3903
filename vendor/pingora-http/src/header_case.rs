// oidc-gateway patch (issue 13): header-name case without a per-request case map.
//
// Released pingora keeps the original spelling of every header name of a parsed head in a
// second `HeaderMap` (the "case map"): two allocations per head, one more insert (a hash) per
// header, and the whole map is cloned with the head (the proxy clones the client's request
// head for the upstream). Almost every name on the wire is spelled in Title-Case (`Host`,
// `Content-Type`, `X-Forwarded-For`), and that spelling is a function of the lowercase name
// the value map is keyed by. So a head now writes Title-Case by default and records only the
// names spelled otherwise (`x-custom`, `WWW-Authenticate`, `sec-ch-ua`), in a short list that
// does not allocate while it is empty. It falls back to the released full case map when one
// name arrives in two spellings, where each value keeps its own. The bytes written are the
// same as with the released case map, whatever is appended, inserted or removed (see the
// tests at the end).

use crate::case_header_name::{titled_header_name_str, CaseHeaderName, IntoCaseHeaderName};
use crate::HMap;
use bytes::{BufMut, Bytes};
use http::header::{HeaderName, HeaderValue};
use pingora_error::{ErrorType::InvalidHTTPHeader, OrErr, Result};

pub(crate) type CaseMap = HMap<CaseHeaderName>;

/// Past this many names spelled otherwise, the full case map is kept instead: the list is
/// searched for every header written, and a client choosing the spelling of a hundred headers
/// must not make that quadratic.
const LISTED_MAX: usize = 16;
/// Longer names spelled otherwise are kept in the full case map too: a listed name is compared
/// (and, after a removal, hashed) per header, so its length must be bounded as well.
const LISTED_NAME_MAX: usize = 64;

/// Whether one more name spelled `case` may go in the list.
fn fits(list: &[(HeaderName, CaseHeaderName)], case: &CaseHeaderName) -> bool {
    list.len() < LISTED_MAX && case.as_slice().len() <= LISTED_NAME_MAX
}

#[derive(Debug, Clone)]
pub(crate) enum HeaderCase {
    /// Not kept (HTTP/2, heads built without case): names are written as pingora's no-case
    /// writer spells them.
    None,
    /// Kept: every name is written in Title-Case, except the ones listed, written as listed.
    Titled(Vec<(HeaderName, CaseHeaderName)>),
    /// Kept in the released full case map, once a name was seen in two spellings.
    Map(CaseMap),
}

/// Whether `raw` is the Title-Case of its lowercase form: no lowercase letter at the start or
/// after a `-`, no uppercase letter elsewhere.
fn is_title_case(raw: &[u8]) -> bool {
    let mut word_start = true;
    for &b in raw {
        if (word_start && b.is_ascii_lowercase()) || (!word_start && b.is_ascii_uppercase()) {
            return false;
        }
        word_start = b == b'-';
    }
    true
}

/// Writes the Title-Case of `name` (lowercase, as [HeaderName] keeps it) without allocating.
fn put_title_case(name: &HeaderName, buf: &mut impl BufMut) {
    let mut chunk = [0u8; 64];
    let mut word_start = true;
    for part in name.as_str().as_bytes().chunks(chunk.len()) {
        for (out, &b) in chunk.iter_mut().zip(part) {
            *out = if word_start {
                b.to_ascii_uppercase()
            } else {
                b
            };
            word_start = b == b'-';
        }
        buf.put_slice(&chunk[..part.len()]);
    }
}

fn title_case(name: &HeaderName) -> CaseHeaderName {
    let mut out = Vec::with_capacity(name.as_str().len());
    put_title_case(name, &mut out);
    Bytes::from(out).into_case_header_name()
}

fn listed<'a>(
    list: &'a [(HeaderName, CaseHeaderName)],
    name: &HeaderName,
) -> Option<&'a CaseHeaderName> {
    list.iter().find(|(n, _)| n == name).map(|(_, case)| case)
}

/// The released case map of `values`, whose names are spelled as `list` says or in Title-Case.
fn full_map(list: &[(HeaderName, CaseHeaderName)], values: &HMap) -> Result<CaseMap> {
    let mut map = CaseMap::try_with_capacity(values.len() + 1)
        .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    for (n, _) in values.iter() {
        let spelling = listed(list, n).cloned().unwrap_or_else(|| title_case(n));
        map.try_append(n.clone(), spelling)
            .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
    }
    Ok(map)
}

impl HeaderCase {
    pub(crate) fn kept() -> Self {
        HeaderCase::Titled(Vec::new())
    }

    pub(crate) fn is_kept(&self) -> bool {
        !matches!(self, HeaderCase::None)
    }

    /// Records the spelling of a value about to be appended under `name` to `values`.
    pub(crate) fn append(
        &mut self,
        values: &HMap,
        name: &HeaderName,
        case: CaseHeaderName,
    ) -> Result<()> {
        let list = match self {
            HeaderCase::None => return Ok(()),
            // Use the non-panicking `try_append`: the infallible `append` calls
            // `.expect("size overflows MAX_SIZE")` internally.
            HeaderCase::Map(map) => {
                map.try_append(name.clone(), case)
                    .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
                return Ok(());
            }
            HeaderCase::Titled(list) => list,
        };
        let titled = is_title_case(case.as_slice());
        let one_spelling = match listed(list, name) {
            Some(seen) => seen.as_slice() == case.as_slice(),
            // Values already under `name` are Title-Case.
            None => titled || !values.contains_key(name),
        };
        if one_spelling && (titled || listed(list, name).is_some() || fits(list, &case)) {
            if !titled && listed(list, name).is_none() {
                list.push((name.clone(), case));
            }
            return Ok(());
        }
        let mut map = full_map(list, values)?;
        map.try_append(name.clone(), case)
            .or_err(InvalidHTTPHeader, "header name map size overflows MAX_SIZE")?;
        *self = HeaderCase::Map(map);
        Ok(())
    }

    /// Records the spelling of a value that is about to replace every value under `name`.
    pub(crate) fn insert(
        &mut self,
        values: &HMap,
        name: &HeaderName,
        case: CaseHeaderName,
    ) -> Result<()> {
        match self {
            HeaderCase::None => {}
            HeaderCase::Map(map) => {
                map.insert(name.clone(), case);
            }
            HeaderCase::Titled(list) => {
                list.retain(|(n, _)| n != name);
                if !is_title_case(case.as_slice()) {
                    if fits(list, &case) {
                        list.push((name.clone(), case));
                    } else {
                        let mut map = full_map(list, values)?;
                        map.insert(name.clone(), case);
                        *self = HeaderCase::Map(map);
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets the spellings of names no longer in `values`, after a removal from it.
    pub(crate) fn removed(&mut self, values: &HMap, name: impl http::header::AsHeaderName) {
        match self {
            HeaderCase::None => {}
            HeaderCase::Map(map) => {
                map.remove(name);
            }
            HeaderCase::Titled(list) => list.retain(|(n, _)| values.contains_key(n)),
        }
    }

    /// The wire spelling of every value's name, in the order of `values`.
    pub(crate) fn for_each<'a>(
        &'a self,
        values: &'a HMap,
        mut f: impl FnMut(Spelling<'a>, &'a HeaderValue) -> Result<()>,
    ) -> Result<()> {
        match self {
            HeaderCase::None => {
                for (n, v) in values {
                    let titled = titled_header_name_str(n).unwrap_or(n.as_str());
                    f(Spelling::Static(titled), v)?;
                }
            }
            HeaderCase::Map(map) => {
                for ((h1, case), (h2, v)) in map.iter().zip(values.iter()) {
                    // in case the header iteration order changes in future versions of HMap
                    assert_eq!(h1, h2, "header iter mismatch {}, {}", h1, h2);
                    f(Spelling::Case(case), v)?;
                }
            }
            HeaderCase::Titled(list) => {
                for (n, v) in values {
                    match listed(list, n) {
                        Some(case) => f(Spelling::Case(case), v)?,
                        None => f(Spelling::TitleOf(n), v)?,
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn write_h1(&self, values: &HMap, buf: &mut impl BufMut) {
        const CRLF: &[u8; 2] = b"\r\n";
        const HEADER_KV_DELIMITER: &[u8; 2] = b": ";
        let _ = self.for_each(values, |spelling, value| {
            match spelling {
                Spelling::Static(s) => buf.put_slice(s.as_bytes()),
                Spelling::Case(case) => buf.put_slice(case.as_slice()),
                Spelling::TitleOf(name) => put_title_case(name, buf),
            }
            buf.put_slice(HEADER_KV_DELIMITER);
            buf.put_slice(value.as_ref());
            buf.put_slice(CRLF);
            Ok(())
        });
    }
}

/// How a name is spelled on the wire.
pub(crate) enum Spelling<'a> {
    Static(&'a str),
    Case(&'a CaseHeaderName),
    TitleOf(&'a HeaderName),
}

impl Spelling<'_> {
    pub(crate) fn to_case(&self) -> CaseHeaderName {
        match self {
            Spelling::Static(s) => CaseHeaderName::from_slice(s.as_bytes()),
            Spelling::Case(case) => (*case).clone(),
            Spelling::TitleOf(name) => title_case(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequestHeader, ResponseHeader};

    #[test]
    fn title_case_is_recognised_and_written() {
        for yes in [
            "Host",
            "X-Forwarded-For",
            "A",
            "X-B3-Traceid",
            "-X",
            "X--Y",
            "1-2",
            "",
        ] {
            assert!(is_title_case(yes.as_bytes()), "{yes}");
        }
        for no in [
            "host",
            "X-Real-IP",
            "WWW-Authenticate",
            "ETag",
            "sec-ch-ua",
            "X-foo",
        ] {
            assert!(!is_title_case(no.as_bytes()), "{no}");
        }
        let long = "x-".repeat(100) + "end";
        let name = HeaderName::from_bytes(long.as_bytes()).unwrap();
        assert_eq!(
            title_case(&name).as_slice(),
            ("X-".repeat(100) + "End").as_bytes()
        );
    }

    #[test]
    fn a_title_case_head_keeps_no_case_map_and_no_list() {
        let mut req = RequestHeader::build("GET", b"/", Some(4)).unwrap();
        req.append_header("Host", "a").unwrap();
        req.append_header("X-Forwarded-For", "b").unwrap();
        req.append_header("X-Forwarded-For", "c").unwrap();
        req.insert_header("Content-Length", "0").unwrap();
        assert!(matches!(&req.header_case, HeaderCase::Titled(list) if list.is_empty()));
        let mut buf = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(
            buf,
            b"Host: a\r\nX-Forwarded-For: b\r\nX-Forwarded-For: c\r\nContent-Length: 0\r\n"
        );
    }

    #[test]
    fn other_spellings_are_listed_and_two_spellings_of_a_name_fall_back_to_the_map() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("sec-ch-ua", "a").unwrap();
        req.append_header("X-Real-IP", "b").unwrap();
        req.append_header("X-Real-IP", "c").unwrap();
        assert!(matches!(&req.header_case, HeaderCase::Titled(list) if list.len() == 2));
        req.append_header("x-real-ip", "d").unwrap();
        assert!(matches!(&req.header_case, HeaderCase::Map(_)));
        let mut buf = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(
            buf,
            b"sec-ch-ua: a\r\nX-Real-IP: b\r\nX-Real-IP: c\r\nx-real-ip: d\r\n"
        );
    }

    #[test]
    fn many_names_spelled_otherwise_fall_back_to_the_map() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for i in 0..LISTED_MAX {
            req.append_header(format!("x-h{i}"), "v").unwrap();
        }
        assert!(matches!(&req.header_case, HeaderCase::Titled(list) if list.len() == LISTED_MAX));
        req.insert_header("x-one-more", "v").unwrap();
        assert!(matches!(&req.header_case, HeaderCase::Map(_)));
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for i in 0..=LISTED_MAX {
            resp.append_header(format!("x-h{i}"), "v").unwrap();
        }
        assert!(matches!(&resp.header_case, HeaderCase::Map(_)));
        let long = "x-".repeat(LISTED_NAME_MAX / 2) + "a";
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header(long.clone(), "v").unwrap();
        assert!(matches!(&req.header_case, HeaderCase::Map(_)));
        let mut buf = vec![];
        req.header_to_h1_wire(&mut buf);
        assert_eq!(buf, format!("{long}: v\r\n").into_bytes());
        let mut buf = vec![];
        resp.header_to_h1_wire(&mut buf);
        let expected: String = (0..=LISTED_MAX).map(|i| format!("x-h{i}: v\r\n")).collect();
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }

    const SPELLINGS: &[&str] = &[
        "x-a-header-name-that-is-longer-than-the-limit-on-listed-names-of-64",
        "X-A-Header-Name-That-Is-Longer-Than-The-Limit-On-Listed-Names-Of-64",
        "Host",
        "host",
        "HOST",
        "X-Foo",
        "x-foo",
        "X-FOO",
        "ETag",
        "Etag",
        "etag",
        "Content-Length",
        "content-length",
        "WWW-Authenticate",
        "Www-Authenticate",
        "sec-ch-ua",
        "Sec-Ch-Ua",
        "A",
        "a",
        "a-b-c",
        "A-B-C",
        "-x",
        "-X",
        "x--y",
        "X--Y",
    ];

    /// Applies the same operations to a head with the released full case map and to one
    /// with the list, and compares every byte written (and what `case_header_iter` and `map`
    /// give), over many pseudo-random sequences.
    #[test]
    fn the_bytes_written_are_those_of_the_released_case_map() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..5000 {
            let mut list = RequestHeader::build("GET", b"/", None).unwrap();
            let mut full = RequestHeader::build("GET", b"/", None).unwrap();
            full.header_case = HeaderCase::Map(CaseMap::default());
            let mut rlist = ResponseHeader::build(200, None).unwrap();
            let mut rfull = ResponseHeader::build(200, None).unwrap();
            rfull.header_case = HeaderCase::Map(CaseMap::default());
            let mut ops = Vec::new();
            for i in 0..next(40) {
                // Sometimes one of many lowercase names, to pass LISTED_MAX.
                let name = match next(3) {
                    0 => format!("x-n{}", next(24)),
                    _ => SPELLINGS[next(SPELLINGS.len())].to_owned(),
                };
                let name = name.as_str();
                let value = format!("v{i}");
                match next(6) {
                    0..=2 => {
                        ops.push(format!("append {name}"));
                        list.append_header(name.to_owned(), &value).unwrap();
                        full.append_header(name.to_owned(), &value).unwrap();
                        rlist.append_header(name.to_owned(), &value).unwrap();
                        rfull.append_header(name.to_owned(), &value).unwrap();
                    }
                    3 | 4 => {
                        ops.push(format!("insert {name}"));
                        list.insert_header(name.to_owned(), &value).unwrap();
                        full.insert_header(name.to_owned(), &value).unwrap();
                        rlist.insert_header(name.to_owned(), &value).unwrap();
                        rfull.insert_header(name.to_owned(), &value).unwrap();
                    }
                    _ => {
                        ops.push(format!("remove {name}"));
                        list.remove_header(name);
                        full.remove_header(name);
                        rlist.remove_header(name);
                        rfull.remove_header(name);
                    }
                }
                if next(4) == 0 {
                    list = list.clone();
                    rlist = rlist.clone();
                }
            }
            let wire = |h: &dyn Fn(&mut Vec<u8>)| {
                let mut buf = vec![];
                h(&mut buf);
                String::from_utf8(buf).unwrap()
            };
            let expected = wire(&|b| full.header_to_h1_wire(b));
            assert_eq!(
                wire(&|b| list.header_to_h1_wire(b)),
                expected,
                "round {round}: {ops:?}"
            );
            assert_eq!(
                wire(&|b| rlist.header_to_h1_wire(b)),
                expected,
                "round {round}: {ops:?}"
            );
            assert_eq!(
                wire(&|b| rfull.header_to_h1_wire(b)),
                expected,
                "round {round}: {ops:?}"
            );
            let names = |h: &RequestHeader| {
                h.case_header_iter()
                    .map(|(k, v)| (k.as_slice().to_vec(), v.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&list), names(&full), "round {round}: {ops:?}");
        }
    }
}

//! Keeping secrets that ride in URLs out of what is stored, shown or logged.
//!
//! A provisioner's or Prometheus' address may carry credentials (`user:password@`, a token as the
//! user name) or a token in its query (`?token=...`). Errors from HTTP clients quote the address
//! they failed on, and such errors are stored (an order's last delivery error) and returned by the
//! API: every such text goes through [`scrub_urls`] first.

/// A URL with its credentials hidden: the password of `user:password@`, the whole user part of an
/// `http(s)` URL that has no password (a token used as the user name; a database URL's lone user
/// part is its role, and stays), every query value and the fragment.
pub fn redact_url(url: &str) -> String {
    let (rest, fragment) = url
        .split_once('#')
        .map_or((url, None), |(r, f)| (r, Some(f)));
    let (base, query) = rest
        .split_once('?')
        .map_or((rest, None), |(b, q)| (b, Some(q)));
    let authority_end = base
        .find("://")
        .map(|scheme| {
            let after = scheme + 3;
            after + base[after..].find('/').unwrap_or(base.len() - after)
        })
        .unwrap_or(0);
    let mut out = match (base.find("://"), base[..authority_end].rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &base[scheme + 3..at];
            let web = base[..scheme].eq_ignore_ascii_case("http")
                || base[..scheme].eq_ignore_ascii_case("https");
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>"),
                None if web => "<redacted>".to_string(),
                None => userinfo.to_string(),
            };
            format!("{}{shown}@{}", &base[..scheme + 3], &base[at + 1..])
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=<redacted>"),
                None if kv.is_empty() => String::new(),
                None => "<redacted>".to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    if fragment.is_some() {
        out.push_str("#<redacted>");
    }
    out
}

/// `text` with every `http://` or `https://` URL in it redacted ([`redact_url`]). A URL ends at
/// white space, a closing parenthesis, a quote or an angle bracket.
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let next = ["http://", "https://"]
            .iter()
            .filter_map(|scheme| find_ascii_ci(rest, scheme))
            .min();
        let Some(start) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        out.push_str(&redact_url(&tail[..end]));
        rest = &tail[end..];
    }
}

/// Byte offset of `needle` (ASCII) in `hay`, ignoring ASCII case.
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_query_values_and_fragments_are_hidden() {
        assert_eq!(
            redact_url("http://u:pw@127.0.0.1:39998/orders?token=SECRET&x=1"),
            "http://u:<redacted>@127.0.0.1:39998/orders?token=<redacted>&x=<redacted>"
        );
        assert_eq!(
            redact_url("https://TOKEN@host/p"),
            "https://<redacted>@host/p"
        );
        assert_eq!(
            redact_url("http://host/p?SECRET"),
            "http://host/p?<redacted>"
        );
        assert_eq!(redact_url("http://host/p#k=v"), "http://host/p#<redacted>");
        // An @ in the path is not user information.
        assert_eq!(redact_url("http://host/a@b"), "http://host/a@b");
        assert_eq!(
            redact_url("postgres://prewarm:pw@db/x"),
            "postgres://prewarm:<redacted>@db/x"
        );
        assert_eq!(
            redact_url("postgres://postgres@db/x"),
            "postgres://postgres@db/x"
        );
    }

    #[test]
    fn urls_inside_a_message_are_redacted_and_the_rest_kept() {
        let text = "cannot reach the provisioner: error sending request for url (http://u:pw@127.0.0.1:39998/orders?token=SECRET): connection refused";
        let shown = scrub_urls(text);
        assert!(
            !shown.contains("SECRET") && !shown.contains("pw"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "cannot reach the provisioner: error sending request for url (http://u:<redacted>@127.0.0.1:39998/orders?token=<redacted>): connection refused"
        );
        assert_eq!(
            scrub_urls("HTTPS://a/?k=v and http://b"),
            "HTTPS://a/?k=<redacted> and http://b"
        );
        assert_eq!(scrub_urls("no address here"), "no address here");
    }
}

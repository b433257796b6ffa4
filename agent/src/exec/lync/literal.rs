//! The one place that turns a value into PowerShell text: [`ps_literal`] builds a single-quoted
//! string literal, and [`fqdn`] checks host names before they get there.
//!
//! Why single quotes: inside a PowerShell single-quoted string nothing is special except the quote
//! itself. There is no variable expansion (`$x`), no subexpression (`$(Remove-Item x)`), no escape
//! character (the backtick is literal), and a double quote is an ordinary character; a `;`, `|`, `#`
//! or `{` cannot end a statement from inside a string either. The only way out is a single quote,
//! and a doubled one is read back as one literal quote. PowerShell counts four more characters as
//! single quotes (U+2018, U+2019, U+201A, U+201B, the typographic ones Word produces), so those are
//! doubled too — exactly what PowerShell's own
//! `CodeGeneration.EscapeSingleQuotedStringContent` does.
//!
//! Control characters (U+0000–U+001F, U+007F–U+009F) are refused rather than quoted, newlines
//! included: NUL cannot cross a Windows command line, and no value the agent handles (FQDNs,
//! identities, module paths) legitimately contains one, so a control character means something is
//! wrong upstream.

use crate::error::Error;

/// Characters PowerShell treats as a single quote (System.Management.Automation.Language
/// `CharExtensions.IsSingleQuote`).
pub const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// `value` as a PowerShell single-quoted literal, quotes included. `field` names the value in the
/// error when it holds a control character.
pub fn ps_literal(field: &'static str, value: &str) -> Result<String, Error> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c.is_control() {
            return Err(Error::InvalidInput {
                field,
                reason: format!(
                    "control character U+{:04X} cannot be passed to PowerShell (value '{}')",
                    u32::from(c),
                    value.escape_default()
                ),
            });
        }
        if SINGLE_QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    Ok(out)
}

/// Checks that `value` is a DNS host name (letters, digits, hyphens; dot-separated labels of 1–63
/// characters, at least two labels, at most 253 characters; no label starts or ends with a hyphen)
/// and returns it. An FQDN that passes can still only reach a script through [`ps_literal`].
pub fn fqdn<'a>(field: &'static str, value: &'a str) -> Result<&'a str, Error> {
    let bad = |reason: String| Error::InvalidInput {
        field,
        reason: format!("'{}' is not an FQDN: {reason}", value.escape_default()),
    };
    if value.is_empty() || value.len() > 253 {
        return Err(bad("length must be 1..=253".into()));
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("needs at least two labels".into()));
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1..=63 characters".into()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(bad(format!("character '{}'", c.escape_default())));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'".into()));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_everything_else_is_literal() {
        let lit = |v| ps_literal("v", v).unwrap();
        assert_eq!(lit(""), "''");
        assert_eq!(lit("service:pc.contoso.com"), "'service:pc.contoso.com'");
        assert_eq!(lit("O'Brien"), "'O''Brien'");
        assert_eq!(lit("''"), "''''''");
        assert_eq!(lit("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(
            lit("x\u{2018}\u{201A}\u{201B}"),
            "'x\u{2018}\u{2018}\u{201A}\u{201A}\u{201B}\u{201B}'"
        );
        // Inert inside single quotes: kept verbatim.
        for v in [
            "$(Remove-Item x)",
            "`n`$",
            "\"a\"",
            "a;b|c#d{e}",
            "@{Replace='x'}",
        ] {
            assert_eq!(lit(v), format!("'{}'", v.replace('\'', "''")));
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for v in [
            "a\0b",
            "a\nb",
            "a\rb",
            "\t",
            "a\u{1b}[0m",
            "a\u{7f}",
            "a\u{85}",
        ] {
            let e = ps_literal("identity", v).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidInput {
                        field: "identity",
                        ..
                    }
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn fqdns() {
        for ok in ["pc01.dc1.contoso.com", "a.b", "x-1.y2.Z"] {
            assert_eq!(fqdn("f", ok).unwrap(), ok);
        }
        let long = format!("{}.com", "a".repeat(64));
        for bad in [
            "",
            "pc01",
            "a..b",
            ".a.b",
            "a.b.",
            "-a.b",
            "a-.b",
            "a b.c",
            "a'.b",
            "a.b;c",
            "$(x).b",
            "a\n.b",
            "ä.b",
            long.as_str(),
        ] {
            assert!(fqdn("f", bad).is_err(), "{bad:?}");
        }
    }
}

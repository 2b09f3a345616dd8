//! Profile text read as the parser's lexer reads it, for the checks armord
//! makes before the parser runs: comments blanked out, tokens split with
//! quoted strings kept whole. One reading for every such check, so none of
//! them disagrees with another on what is a comment.

/// The text with its comments blanked out (newlines kept, so lines keep
/// their numbers), read as the parser reads it: a quoted string runs on
/// across lines and a `\"` in it does not end it; a `#` starts a comment
/// only where a token could start (at the start of a line or after white
/// space), and never `#include`. Where this reading could differ from the
/// parser's, it keeps more text, never less: what is kept is checked.
pub fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for (i, c) in text.char_indices() {
        if comment {
            if c == '\n' {
                comment = false;
                out.push(c);
            }
            prev = c;
            continue;
        }
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        } else if c == '#' && prev.is_whitespace() && !text[i..].starts_with("#include") {
            comment = true;
            prev = c;
            continue;
        }
        out.push(c);
        prev = c;
    }
    out
}

/// A token without its surrounding quotes.
pub fn unquote(tok: &str) -> String {
    tok.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tok)
        .to_owned()
}

/// Split a header into tokens, keeping quoted strings whole.
pub fn tokens(header: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    for c in header.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            c if c.is_whitespace() && !in_quote => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_comment_rule() {
        // `#` starts a comment only where a token could start, never as
        // `#include`, and never inside quotes, which run across lines.
        assert_eq!(blank_comments("a # b\nc"), "a \nc");
        assert_eq!(blank_comments("#include <x>\n"), "#include <x>\n");
        assert_eq!(blank_comments("/usr/bin/a#b r,\n"), "/usr/bin/a#b r,\n");
        assert_eq!(blank_comments("\"x #\ny\" # z\n"), "\"x #\ny\" \n");
        assert_eq!(blank_comments("\"a\\\" # b\"\n"), "\"a\\\" # b\"\n");
    }

    #[test]
    fn tokens_keep_quoted_strings_whole() {
        assert_eq!(
            tokens("profile \"a b\" flags=(complain) {"),
            ["profile", "\"a b\"", "flags=(complain)", "{"]
        );
        assert_eq!(unquote("\"a b\""), "a b");
    }
}

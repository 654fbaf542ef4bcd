//! Redis glob patterns (`SCAN MATCH`), matched the way the server does.
//!
//! Keys are data: a key or prefix containing `*`, `?`, `[`, `]` or `\` must
//! never widen a pattern, so literal parts go through [`escape_glob`].

/// Escapes glob metacharacters so that `s` matches only itself.
pub fn escape_glob(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Whether `text` matches `pattern` with Redis' rules: `*`, `?`, `[abc]`,
/// `[^a]`, `[a-z]` and `\` escapes.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    // Redis matches bytes, not characters: `?` takes one byte of `é`.
    matches_from(pattern.as_bytes(), text.as_bytes())
}

fn matches_from(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Backtracking point for the last `*`: (pattern index after it, text index).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_matches(pattern, p, text[t])
                        && matched
                    {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((after_star, matched_until)) => {
                p = after_star;
                t = matched_until + 1;
                star = Some((after_star, matched_until + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn signed(byte: u8) -> i8 {
    i8::from_ne_bytes([byte])
}

/// Matches `c` against the class starting at `pattern[start] == '['`.
/// Returns whether it matched and the index after the class.
fn class_matches(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
            // As in Redis, `x-]` is a range up to `]` (which then does not
            // close the class).
            // Redis compares range bounds as C `char`s, which are signed
            // on x86-64: a non-ASCII bound is negative there.
            let (start, end, c) = (signed(pattern[i]), signed(pattern[i + 2]), signed(c));
            let (low, high) = if start <= end {
                (start, end)
            } else {
                (end, start)
            };
            matched |= low <= c && c <= high;
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    // Redis treats an unterminated class as ending at the pattern's end.
    let next = if i < pattern.len() { i + 1 } else { i };
    Some((matched != negate, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_classes_and_escapes_match_like_redis() {
        assert!(glob_matches("user:*", "user:1"));
        assert!(glob_matches("user:*", "user:"));
        assert!(!glob_matches("user:*", "users:1"));
        assert!(glob_matches("h?llo", "hello"));
        assert!(!glob_matches("h?llo", "hllo"));
        assert!(glob_matches("h[ae]llo", "hallo"));
        assert!(!glob_matches("h[ae]llo", "hillo"));
        assert!(glob_matches("h[^e]llo", "hallo"));
        assert!(!glob_matches("h[^e]llo", "hello"));
        assert!(glob_matches("h[a-c]llo", "hbllo"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "axxbyy"));
        assert!(glob_matches("\\*", "*"));
        assert!(!glob_matches("\\*", "x"));
    }

    #[test]
    fn escaped_text_matches_only_itself() {
        for hostile in ["a*", "a?", "[ab]", "x\\", "^-]", "k:*:[0-9]?\\"] {
            let pattern = escape_glob(hostile);
            assert!(glob_matches(&pattern, hostile), "{hostile}");
            assert!(!glob_matches(&pattern, "a"), "{hostile}");
            assert!(!glob_matches(&pattern, "ab"), "{hostile}");
            let prefix = format!("{}*", escape_glob(hostile));
            assert!(glob_matches(&prefix, &format!("{hostile}tail")));
            assert!(!glob_matches(&prefix, "other"));
        }
    }
}

//! A unified diff of two texts, line by line, as `git apply` and `patch`
//! read it (three lines of context).

/// Past this many lines on either side, no diff is made (the table grows
/// with the product of the two).
pub(super) const MAX_LINES: usize = 20_000;

const CONTEXT: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// The unified diff from `old` to `new`, labelled `a/{name}` and
/// `b/{name}`; empty when they are equal; `None` when either is too long.
pub(super) fn unified(name: &str, old: &str, new: &str) -> Option<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return None;
    }
    if a == b {
        return Some(String::new());
    }
    let ops = script(&a, &b);
    let mut out = format!("--- a/{name}\n+++ b/{name}\n");
    // Positions (old, new) before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0usize, 0usize);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Same => (i, j) = (i + 1, j + 1),
            Op::Del => i += 1,
            Op::Add => j += 1,
        }
    }
    pos.push((i, j));
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT {
            end = changed[k];
            k += 1;
        }
        let end = (end + 1 + CONTEXT).min(ops.len());
        let (oi, nj) = pos[start];
        let olen = ops[start..end].iter().filter(|o| **o != Op::Add).count();
        let nlen = ops[start..end].iter().filter(|o| **o != Op::Del).count();
        out.push_str(&format!(
            "@@ -{},{olen} +{},{nlen} @@\n",
            if olen == 0 { oi } else { oi + 1 },
            if nlen == 0 { nj } else { nj + 1 }
        ));
        for (op, &(oi, nj)) in ops[start..end].iter().zip(&pos[start..end]) {
            match op {
                Op::Same => out.push_str(&format!(" {}\n", a[oi])),
                Op::Del => out.push_str(&format!("-{}\n", a[oi])),
                Op::Add => out.push_str(&format!("+{}\n", b[nj])),
            }
        }
    }
    Some(out)
}

/// The shortest edit script, from a longest-common-subsequence table.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common prefix and suffix need no table.
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let w = mb.len() + 1;
    let mut t = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            t[i * w + j] = if ma[i] == mb[j] {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let mut ops = vec![Op::Same; pre];
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            ops.push(Op::Same);
            (i, j) = (i + 1, j + 1);
        } else if i < ma.len() && (j == mb.len() || t[(i + 1) * w + j] >= t[i * w + j + 1]) {
            // A line replaced reads as diff(1) writes it: the old first.
            ops.push(Op::Del);
            i += 1;
        } else {
            ops.push(Op::Add);
            j += 1;
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suf));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apply a unified diff the simple way, to check what `unified` writes.
    fn apply(old: &str, diff: &str) -> String {
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut at = 0usize;
        for line in diff.lines().skip(2) {
            if let Some(h) = line.strip_prefix("@@ -") {
                let start: usize = h.split([',', ' ']).next().unwrap().parse().unwrap();
                let start = start.saturating_sub(1).max(at);
                while at < start {
                    out.push(a[at].to_owned());
                    at += 1;
                }
            } else if let Some(l) = line.strip_prefix(' ') {
                assert_eq!(a[at], l);
                out.push(l.to_owned());
                at += 1;
            } else if let Some(l) = line.strip_prefix('-') {
                assert_eq!(a[at], l);
                at += 1;
            } else if let Some(l) = line.strip_prefix('+') {
                out.push(l.to_owned());
            }
        }
        out.extend(a[at..].iter().map(|s| (*s).to_owned()));
        out.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn an_inserted_block_is_one_hunk() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nd\nX\nY\ne\nf\ng\n";
        let d = unified("p", old, new).unwrap();
        assert_eq!(d, "--- a/p\n+++ b/p\n@@ -2,6 +2,8 @@\n b\n c\n d\n+X\n+Y\n e\n f\n g\n");
        assert_eq!(apply(old, &d), new);
        assert_eq!(unified("p", old, old).unwrap(), "");
    }

    #[test]
    fn a_changed_line_shows_the_old_one_first() {
        let d = unified(
            "s",
            "name = \"a\"\nexec = [\"/x\"]\n",
            "name = \"a\"\nexec = [\"/x\", \"/y\"]\n",
        )
        .unwrap();
        assert!(d.ends_with("-exec = [\"/x\"]\n+exec = [\"/x\", \"/y\"]\n"), "{d}");
    }

    #[test]
    fn changes_apply_back() {
        let cases = [
            ("", "a\n"),
            ("a\n", ""),
            ("x = [\"a\"]\ny = 1\n", "x = [\"a\", \"b\"]\ny = 1\nz = [\"c\"]\n"),
            (
                "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n",
                "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\nX\n13\n14\n",
            ),
        ];
        for (old, new) in cases {
            let d = unified("f", old, new).unwrap();
            assert_eq!(apply(old, &d), new, "{d}");
        }
    }
}

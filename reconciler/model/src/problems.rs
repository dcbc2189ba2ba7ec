//! Problems found in one resource, with the path of the value at fault. The loader turns them
//! into diagnostics with file positions (it finds the position of each path only when there is
//! a problem, so valid input never pays for it).

use crate::selector::{Selector, SelectorError};
use crate::yaml::Path;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub path: Path,
    pub message: String,
    /// For selector errors: the selector text and the 1-based column in it, so the file column
    /// can point at the character when the selector is written verbatim on one line.
    pub inner: Option<(String, usize)>,
}

#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem with the value at `path`; the message is prefixed with the path.
    pub fn at(&mut self, path: &Path, message: impl Into<String>) {
        let message = message.into();
        let message = if path.is_root() {
            message
        } else {
            format!("{path}: {message}")
        };
        self.0.push(Problem {
            path: path.clone(),
            message,
            inner: None,
        });
    }

    /// Records that `parent.field` is missing, at the position of `parent`.
    pub fn missing(&mut self, parent: &Path, field: &str, advice: &str) {
        self.0.push(Problem {
            path: parent.clone(),
            message: format!("{}.{field} is missing; {advice}", parent),
            inner: None,
        });
    }

    /// Records a problem with the value at `path` whose message names what it is about itself.
    pub fn at_unprefixed(&mut self, path: &Path, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.clone(),
            message: message.into(),
            inner: None,
        });
    }

    /// Parses an optional selector; an absent or empty one is None. `global()` is refused
    /// unless `allow_global` (only namespace selectors of rules may use it).
    pub fn selector(
        &mut self,
        path: &Path,
        text: Option<&str>,
        allow_global: bool,
    ) -> Option<Selector> {
        let text = text?;
        if text.trim().is_empty() {
            return None;
        }
        match Selector::parse(text) {
            Ok(sel) => {
                if sel.uses_global() && !allow_global {
                    self.at(
                        path,
                        "global() can only be used in a rule's namespaceSelector; write all() to select everything",
                    );
                }
                Some(sel)
            }
            Err(e) => {
                self.selector_error(path, text, &e);
                None
            }
        }
    }

    pub fn selector_error(&mut self, path: &Path, text: &str, e: &SelectorError) {
        // A selector is quoted whole when it is short; a long one (a generated chain, or one
        // nested past the limit) only by its start, so that one bad line is not megabytes of
        // log and status.
        const QUOTED: usize = 120;
        let quoted = if text.chars().count() <= QUOTED {
            format!("{text:?}")
        } else {
            let start: String = text.chars().take(QUOTED / 2).collect();
            format!("{start:?}... ({} characters)", text.chars().count())
        };
        self.0.push(Problem {
            path: path.clone(),
            message: format!(
                "{path}: invalid selector {quoted}: {} (at column {} of the selector)",
                e.message, e.column
            ),
            inner: Some((text.to_string(), e.column)),
        });
    }

    /// Records a problem at character `col` (1-based) of the text at `path`: the file column
    /// points at that character when the text is written verbatim on one line.
    pub fn in_text(&mut self, path: &Path, text: &str, col: usize, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.clone(),
            message: format!("{path}: {}", message.into()),
            inner: Some((text.to_string(), col)),
        });
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

//! The progress bar of long work (backup, restore, rotate-key, bench): drawn on stderr when
//! stderr is a terminal, absent otherwise, so pipes, scripts and tests stay quiet and
//! stdout only ever carries the command's output.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use swarm_memory::Progress;

/// A bar for one piece of long work; finished (and cleared) when dropped.
pub(crate) struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar labelled `what` counting `unit`s (`pages`, `records`).
    pub(crate) fn new(what: &str, unit: &str) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left)");
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), target)
            .with_style(style)
            .with_message(what.to_owned());
        Self { bar }
    }

    /// Replaces the label (a new phase of the work).
    pub(crate) fn relabel(&self, what: impl Into<std::borrow::Cow<'static, str>>) {
        self.bar.set_message(what);
    }

    /// Shows `p` (the total may grow while the work runs).
    pub(crate) fn show(&self, p: Progress) {
        self.bar.set_length(p.total.max(p.done));
        self.bar.set_position(p.done);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

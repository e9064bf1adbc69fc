//! A bound on what the tar reader may take into memory for one entry's headers.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// How much the tar reader may read while it looks for the next entry, shared between the
/// reader (which enforces it) and the unpack loop (which arms it around each `next()`).
///
/// The tar crate reads a PAX or GNU long-name header whole into memory, whatever size the
/// header claims; a layer of a few kilobytes of gzip can claim gigabytes of zeros. The loop
/// drains every entry's data itself before asking for the next, so what the tar reader reads
/// in `next()` is only padding and headers, and that is what the budget bounds.
#[derive(Clone, Default)]
pub(crate) struct HeaderBudget(Rc<BudgetState>);

#[derive(Default)]
struct BudgetState {
    left: Cell<Option<u64>>,
    exceeded: Cell<bool>,
}

impl HeaderBudget {
    pub(crate) fn arm(&self, bytes: u64) {
        self.0.left.set(Some(bytes));
    }

    pub(crate) fn disarm(&self) {
        self.0.left.set(None);
    }

    /// Whether a read failed because the budget ran out (the tar crate may wrap the error).
    pub(crate) fn exceeded(&self) -> bool {
        self.0.exceeded.get()
    }
}

/// Enforces a [`HeaderBudget`] on the reads that pass through it.
pub(crate) struct BudgetReader<R> {
    inner: R,
    budget: HeaderBudget,
}

impl<R> BudgetReader<R> {
    pub(crate) fn new(inner: R, budget: HeaderBudget) -> Self {
        BudgetReader { inner, budget }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for BudgetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let state = &self.budget.0;
        let Some(left) = state.left.get() else {
            return self.inner.read(buf);
        };
        if left == 0 {
            state.exceeded.set(true);
            return Err(io::Error::other("tar headers exceed the header budget"));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        state.left.set(Some(left - n as u64));
        Ok(n)
    }
}

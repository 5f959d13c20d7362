//! Windows into device buffers: what every op reads and writes.

/// A window into a device buffer: `len` elements from `off`.
pub struct View<'a, T> {
    pub buf: &'a T,
    pub off: usize,
    pub len: usize,
}

impl<T> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for View<'_, T> {}

/// A mutable window into a device buffer.
pub struct ViewMut<'a, T> {
    pub buf: &'a mut T,
    pub off: usize,
    pub len: usize,
}

impl<'a, T> ViewMut<'a, T> {
    /// Reborrow, so one output can be passed to several calls in turn.
    pub fn rb(&mut self) -> ViewMut<'_, T> {
        ViewMut {
            buf: self.buf,
            off: self.off,
            len: self.len,
        }
    }
}

/// A buffer of elements on some device.
pub trait DeviceBuf {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn view(&self) -> View<'_, Self>
    where
        Self: Sized,
    {
        View {
            buf: self,
            off: 0,
            len: self.len(),
        }
    }
    fn view_mut(&mut self) -> ViewMut<'_, Self>
    where
        Self: Sized,
    {
        let len = self.len();
        ViewMut {
            buf: self,
            off: 0,
            len,
        }
    }
    fn slice(&self, off: usize, len: usize) -> View<'_, Self>
    where
        Self: Sized,
    {
        assert!(
            off + len <= self.len(),
            "view {off}+{len} past {}",
            self.len()
        );
        View {
            buf: self,
            off,
            len,
        }
    }
    fn slice_mut(&mut self, off: usize, len: usize) -> ViewMut<'_, Self>
    where
        Self: Sized,
    {
        assert!(
            off + len <= self.len(),
            "view {off}+{len} past {}",
            self.len()
        );
        ViewMut {
            buf: self,
            off,
            len,
        }
    }
}

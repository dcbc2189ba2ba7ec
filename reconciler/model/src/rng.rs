//! splitmix64, a small seeded generator for the generated tests of every crate (random
//! documents, states, policies): a seed names a case, so a failure can be run again alone.

/// The generator's state; `Rng(seed)` starts the sequence that seed names.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    pub fn pick_copied<T: Copy>(&mut self, xs: &[T]) -> T {
        *self.pick(xs)
    }

    /// Picks by weight.
    pub fn weighted<T: Copy>(&mut self, xs: &[(T, usize)]) -> T {
        let total: usize = xs.iter().map(|x| x.1).sum();
        let mut n = self.below(total);
        for &(x, w) in xs {
            if n < w {
                return x;
            }
            n -= w;
        }
        unreachable!("n is below the total weight")
    }
}

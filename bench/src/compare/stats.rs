//! Median and spread of one figure over a cell's repeated runs.

use serde::Serialize;

/// The median of a set of measurements and the range they span.
///
/// The median, not the mean: one run disturbed by something else on the
/// machine moves it little, and the min–max shows that it happened.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// Each of the three multiplied by `by`.
    pub fn scale(self, by: f64) -> Spread {
        Spread { median: self.median * by, min: self.min * by, max: self.max * by }
    }

    /// The spread of `values`, ignoring NaNs; `None` when nothing is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
        Some(Spread { median, min, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle_value() {
        let s = Spread::of([5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s, Spread { median: 3.0, min: 1.0, max: 5.0 });
    }

    #[test]
    fn even_count_averages_the_two_middle_values() {
        let s = Spread::of([4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s, Spread { median: 3.0, min: 1.0, max: 10.0 });
    }

    #[test]
    fn one_value_is_its_own_spread() {
        assert_eq!(Spread::of([7.5]), Some(Spread { median: 7.5, min: 7.5, max: 7.5 }));
    }

    #[test]
    fn nothing_gives_none() {
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN]), None);
    }

    #[test]
    fn nans_are_left_out_and_outliers_do_not_move_the_median() {
        let s = Spread::of([2.0, f64::NAN, 2.0, 1000.0]).unwrap();
        assert_eq!(s, Spread { median: 2.0, min: 2.0, max: 1000.0 });
    }
}

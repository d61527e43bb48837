//! `ferry-testing`: cross-backend tests the way users write them — [`compare`] any two
//! arrays (candle, Burn and tch tensors, host arrays, ndarray arrays, golden files) by
//! `torch.testing.assert_close`'s rule, defaults and report; [`assert_close!`] and
//! [`assert_equal!`]; [`Golden`] files written by PyTorch, NumPy or ferry; and
//! [`backend_tests!`], one `#[test]` per framework the build enables. The facade re-exports it
//! as `ferry::testing` (feature `testing`), with the macros at `ferry::assert_close!` and so on.
//!
//! ```
//! use ferry_core::HostArray;
//! use ferry_testing::assert_close;
//!
//! let expected = HostArray::from_vec(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap();
//! let actual = ferry_core::ndarray::arr1(&[1.0f32, 2.000001, 3.0]);
//! assert_close!(actual, expected);
//! assert_close!(actual, expected, rtol = 0.0, atol = 1e-5);
//! ```
//!
//! Modules: `tolerance` (the defaults table, dtype promotion), `kind` (each dtype's
//! `torch.isclose` arithmetic), `compare` (the pass over both arrays and the report),
//! `input` (what can be compared), `golden` (files), `repr` (numbers as Python writes them).

mod compare;
mod error;
mod golden;
mod input;
mod kind;
pub mod repr;
mod tolerance;

pub use compare::{Comparison, Greatest, Mismatch, compare, compare_values};
pub use error::{Error, Result};
pub use golden::{BLESS, Golden};
pub use input::{AnyView, Compared, Values, ViewElement};
pub use repr::Value;
pub use tolerance::{Tolerance, promote};

/// The framework markers `backend_tests!` instantiates (those this build enables).
#[doc(hidden)]
pub mod __backends {
    #[cfg(feature = "burn")]
    pub use ferry_burn::Burn;
    #[cfg(feature = "candle")]
    pub use ferry_candle::Candle;
    #[cfg(feature = "tch")]
    pub use ferry_tch::Tch;
}

/// What [`assert_close!`] and [`assert_equal!`] run: panics with the report (or the error) at
/// the caller's line.
#[doc(hidden)]
#[track_caller]
pub fn __assert(actual: &impl Compared, expected: &impl Compared, tolerance: Tolerance) {
    match compare(actual, expected, &tolerance) {
        Ok(c) if c.is_close() => {}
        Ok(c) => panic!("{c}"),
        Err(e) => panic!("{e}"),
    }
}

/// What a test made by [`backend_tests!`] runs.
#[doc(hidden)]
#[track_caller]
pub fn __backend_test<E: std::fmt::Display>(
    check: &str,
    backend: &str,
    result: std::result::Result<(), E>,
) {
    if let Err(e) = result {
        panic!("{check} failed on {backend}: {e}");
    }
}

/// Asserts that two arrays are close by `torch.testing.assert_close`'s rule, panicking at the
/// caller's line with the report:
///
/// ```text
/// Tensor-likes are not close!
///
/// Mismatched elements: 1 / 3 (33.3%)
/// Greatest absolute difference: 0.5 at index (2,) (up to 1e-05 allowed)
/// Greatest relative difference: 0.16666666666666666 at index (2,) (up to 1.3e-06 allowed)
/// ...
/// ```
///
/// Either side is anything [`Compared`] (a framework tensor, a host array, an ndarray
/// array). Options after the two arrays, in this order: `rtol = …, atol = …` (both or
/// neither), `equal_nan`, `any_dtype`; or `tolerance = some_tolerance`.
///
/// ```should_panic
/// use ferry_testing::assert_close;
/// assert_close!(ferry_core::ndarray::arr1(&[1.0f32, 2.0, 3.5]), ferry_core::ndarray::arr1(&[1.0f32, 2.0, 3.0]));
/// ```
#[macro_export]
macro_rules! assert_close {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::__assert(&$actual, &$expected, $crate::Tolerance::default())
    };
    ($actual:expr, $expected:expr, $($option:tt)+) => {
        $crate::__assert(
            &$actual,
            &$expected,
            $crate::__tolerance!($crate::Tolerance::default(); $($option)+),
        )
    };
}

/// Asserts exact equality (`rtol = atol = 0`, NaN equal to NaN): for integers, masks,
/// indices, and floats that must match bit for bit. `assert_equal!(a, e, any_dtype)` compares
/// different dtypes in the wider one.
///
/// ```
/// use ferry_testing::assert_equal;
/// assert_equal!(ferry_core::ndarray::arr1(&[1i64, 2, 3]), ferry_core::ndarray::arr1(&[1i64, 2, 3]));
/// ```
#[macro_export]
macro_rules! assert_equal {
    ($actual:expr, $expected:expr $(,)?) => {
        $crate::__assert(&$actual, &$expected, $crate::Tolerance::exact())
    };
    ($actual:expr, $expected:expr, any_dtype $(,)?) => {
        $crate::__assert(&$actual, &$expected, $crate::Tolerance::exact().any_dtype())
    };
}

/// The options of [`assert_close!`] as a [`Tolerance`].
#[doc(hidden)]
#[macro_export]
macro_rules! __tolerance {
    ($t:expr;) => { $t };
    ($t:expr; tolerance = $tolerance:expr $(,)?) => { $tolerance };
    ($t:expr; rtol = $rtol:expr, atol = $atol:expr $(, $($rest:tt)*)?) => {
        $crate::__tolerance!($t.with_rtol_atol($rtol, $atol); $($($rest)*)?)
    };
    ($t:expr; equal_nan $(, $($rest:tt)*)?) => {
        $crate::__tolerance!($t.equal_nan(); $($($rest)*)?)
    };
    ($t:expr; any_dtype $(, $($rest:tt)*)?) => {
        $crate::__tolerance!($t.any_dtype(); $($($rest)*)?)
    };
}

/// One `#[test]` per framework this build of ferry enables, for each generic check
/// `fn check<B: ferry::Backend>() -> ferry::Result<()>`: `backend_tests!(check);` makes
/// `check::candle`, `check::burn` (Burn Flex, rank 2 floats: `ferry::Burn`) and `check::tch`,
/// so a failure names the framework. Which ones exist follows ferry's features, not the
/// calling crate's.
///
/// ```ignore
/// fn round_trip<B: ferry::Backend>() -> ferry::Result<()> {
///     let host = ferry::HostArray::from_vec(vec![2, 2], vec![1f32, 2., 3., 4.])?;
///     let t = B::from_host(&host, &B::cpu())?;
///     ferry::assert_close!(B::to_host(&t)?, host);
///     Ok(())
/// }
/// ferry::backend_tests!(round_trip);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($check:ident),+ $(,)?) => {$(
        mod $check {
            $crate::__if_candle! {
                #[test]
                fn candle() {
                    $crate::__backend_test(
                        stringify!($check),
                        "candle",
                        super::$check::<$crate::__backends::Candle>(),
                    )
                }
            }
            $crate::__if_burn! {
                #[test]
                fn burn() {
                    $crate::__backend_test(
                        stringify!($check),
                        "burn",
                        super::$check::<$crate::__backends::Burn>(),
                    )
                }
            }
            $crate::__if_tch! {
                #[test]
                fn tch() {
                    $crate::__backend_test(
                        stringify!($check),
                        "tch",
                        super::$check::<$crate::__backends::Tch>(),
                    )
                }
            }
        }
    )+};
}

/// Keeps its input where this build has candle.
#[cfg(feature = "candle")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_candle {
    ($($tokens:tt)*) => { $($tokens)* };
}

/// Drops its input: this build has no candle.
#[cfg(not(feature = "candle"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_candle {
    ($($tokens:tt)*) => {};
}

/// Keeps its input where this build has burn.
#[cfg(feature = "burn")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_burn {
    ($($tokens:tt)*) => { $($tokens)* };
}

/// Drops its input: this build has no burn.
#[cfg(not(feature = "burn"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_burn {
    ($($tokens:tt)*) => {};
}

/// Keeps its input where this build has tch.
#[cfg(feature = "tch")]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tch {
    ($($tokens:tt)*) => { $($tokens)* };
}

/// Drops its input: this build has no tch.
#[cfg(not(feature = "tch"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __if_tch {
    ($($tokens:tt)*) => {};
}

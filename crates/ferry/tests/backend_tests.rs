//! `ferry::backend_tests!` as a user's crate writes it: one `#[test]` per framework this build
//! of ferry enables (`cargo xtask ci` lists them under two feature sets).
#![cfg(feature = "testing")]

use ferry::{Backend, HostArray};

/// Every framework keeps a 2-d f32 array's values through its own tensor.
#[allow(dead_code)] // no test uses it when the build has no framework
fn keeps_values<B: Backend>() -> ferry::Result<()> {
    let host = HostArray::from_vec(vec![2, 3], vec![0.5f32, -1.0, 2.0, 3.5, 0.0, 7.0])?;
    let tensor = B::from_host(&host, &B::cpu())?;
    ferry::assert_equal!(B::to_host(&tensor)?, host);
    Ok(())
}

ferry::backend_tests!(keeps_values);

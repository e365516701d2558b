//! The one integration-test binary: every scenario lives in a module here so the suite links once.

mod kubectl;

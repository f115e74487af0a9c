//! vm-tests

//! A store another process holds says so, with its path, instead of fjall's
//! "FjallError: Locked: FjallError: Locked".
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use reckon_store::{Error, Store};

#[test]
fn a_locked_store_names_the_other_process_and_the_path() {
    let dir = tempdir();
    let _held = Store::open(dir.path()).unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("another reckon process holds the store at")
            && text.contains(&dir.path().display().to_string()),
        "{text}"
    );
    assert!(!text.contains("FjallError"), "{text}");
}

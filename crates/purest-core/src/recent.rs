//! The addresses this thread decoded or encoded lately, each with its JSON as the codec writes it.
//! A process talks to few addresses, and every message carries one or two: sharing them spares an
//! `Arc<Address>` and its names per decoded message, and reading or writing the JSON of a known
//! one is a compare and a copy instead of eight strings scanned or escaped.
//!
//! The table is bounded ([`SLOTS`] per thread, the oldest replaced first) and holds each address
//! alive, so an `Arc`'s pointer identifies its entry for as long as the entry exists.

use std::cell::RefCell;
use std::sync::Arc;

use crate::codec;
use crate::envelope::Address;

/// Addresses kept per thread.
const SLOTS: usize = 32;
/// Longer JSON is not kept (nor looked for): names that long are not worth a slot's memory.
const MAX_JSON: usize = 512;

struct Known {
    address: Arc<Address>,
    /// `{"serviceName":…}` exactly as [`codec`] writes it.
    json: Box<[u8]>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Known>,
    next: usize,
}

impl Table {
    /// Keeps `address`, replacing the oldest when full; its slot, or `None` when its JSON is too
    /// long (or cannot be written) to keep.
    fn insert(&mut self, address: Arc<Address>) -> Option<usize> {
        let mut json = Vec::with_capacity(128);
        if codec::write_address(&mut json, &address).is_err() || json.len() > MAX_JSON {
            return None;
        }
        let known = Known {
            address,
            json: json.into_boxed_slice(),
        };
        if self.slots.len() < SLOTS {
            self.slots.push(known);
            Some(self.slots.len() - 1)
        } else {
            let slot = self.next;
            self.slots[slot] = known;
            self.next = (slot + 1) % SLOTS;
            Some(slot)
        }
    }
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// The recent address that `is` the one `key` describes, else `new(key)`, which becomes a recent one.
pub(crate) fn address<K>(key: K, is: impl Fn(&K, &Address) -> bool, new: impl FnOnce(K) -> Address) -> Arc<Address> {
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        if let Some(known) = table.slots.iter().find(|known| is(&key, &known.address)) {
            return known.address.clone();
        }
        let address = Arc::new(new(key));
        table.insert(address.clone());
        address
    })
}

/// The recent address whose JSON `text` starts with, and that JSON's length.
pub(crate) fn address_at(text: &[u8]) -> Option<(Arc<Address>, usize)> {
    TABLE.with(|table| {
        let table = table.borrow();
        let known = table.slots.iter().find(|known| text.starts_with(&known.json))?;
        Some((known.address.clone(), known.json.len()))
    })
}

/// Writes the JSON of `address` into `out` from the table, adding the address when it is not
/// there; `false` when it cannot be kept (the caller writes it itself).
pub(crate) fn write_json(address: &Arc<Address>, out: &mut Vec<u8>) -> bool {
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let found = table
            .slots
            .iter()
            .position(|known| Arc::ptr_eq(&known.address, address))
            .or_else(|| table.slots.iter().position(|known| *known.address == **address))
            .or_else(|| table.insert(address.clone()));
        let Some(found) = found else { return false };
        out.extend_from_slice(&table.slots[found].json);
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(address: &Address) -> Vec<u8> {
        let mut json = Vec::new();
        codec::write_address(&mut json, address).unwrap();
        json
    }

    #[test]
    fn known_addresses_are_written_from_the_table_and_never_mixed_up() {
        // More addresses than slots: the oldest are replaced, every one still written right.
        let addresses: Vec<Arc<Address>> = (0..SLOTS * 2)
            .map(|n| Arc::new(Address::new("svc", "1", &format!("target{n}"))))
            .collect();
        for _ in 0..2 {
            for address in &addresses {
                let mut out = Vec::new();
                assert!(write_json(address, &mut out));
                assert_eq!(out, written(address));
                let (shared, len) = address_at(&out).expect("just kept");
                assert_eq!((&*shared, len), (&**address, out.len()));
            }
        }
        // An equal address in another Arc is found by its names.
        let copy = Arc::new(Address::clone(&addresses[SLOTS * 2 - 1]));
        let mut out = Vec::new();
        assert!(write_json(&copy, &mut out));
        assert_eq!(out, written(&copy));
    }

    #[test]
    fn addresses_too_long_to_keep_are_left_to_the_caller() {
        let long = Arc::new(Address::new("svc", "1", &"x".repeat(MAX_JSON)));
        let mut out = Vec::new();
        assert!(!write_json(&long, &mut out));
        assert!(out.is_empty());
        assert!(address_at(&written(&long)).is_none());
    }
}

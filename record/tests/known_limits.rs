//! Behaviour the format cannot avoid, pinned so that a change to it is a decision, not an accident.

use cairn_record::{RecordId, ScanItem, Scanner, WriterId, encode_record};

/// A record whose payload is itself a valid frame: when the outer frame is damaged, the
/// scanner's search finds the inner frame and returns it as a record at an offset nobody
/// appended to. CRCs cannot tell an embedded frame from a real one; readers guard against this
/// by preferring a replica on which the range is whole (ARCHITECTURE.md, "Reads"), and a fix would need the
/// format to bind each frame to its offset (see FORMAT.md, "Resynchronisation").
#[test]
fn frame_embedded_in_a_damaged_record_is_found_by_the_search() {
    let inner_id = RecordId {
        writer: WriterId(2),
        sequence: 1,
    };
    let mut inner = Vec::new();
    encode_record(&mut inner, inner_id, b"inner", 1 << 10).unwrap();
    let mut buf = Vec::new();
    let outer_id = RecordId {
        writer: WriterId(1),
        sequence: 1,
    };
    encode_record(&mut buf, outer_id, &inner, 1 << 10).unwrap();
    buf[0] ^= 1;
    let items: Vec<_> = Scanner::new(&buf, 32).collect();
    assert_eq!(
        items,
        vec![
            ScanItem::Corrupt {
                offset: 32,
                len: 32
            },
            ScanItem::Record {
                offset: 64,
                id: inner_id,
                payload: b"inner"
            },
        ]
    );
}

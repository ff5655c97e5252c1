//! Bytes through `Asmap::from_bytes`, with the checks of `testkit::asmap`: no panic; an
//! accepted file's lookups do not panic, and it is refused with a byte more or less.
//!
//! Input layout: byte 0 holds flags.
//! - bit 0 clear: the rest is the file.
//! - bit 0 set: the rest is 3-byte records `[op][value u16 BE]` assembled into a program
//!   (op % 4 picks RETURN, JUMP, MATCH or DEFAULT; the value is brought into the
//!   instruction's range), so sequences of real instructions reach the deeper checks.
#![no_main]

use dnsseeder::testkit::asmap::{Instruction, assemble_bits, check_asmap_bytes, pack};
use libfuzzer_sys::fuzz_target;

fn instruction(record: &[u8]) -> Instruction {
    let value = u32::from(u16::from_be_bytes([record[1], record[2]]));
    match record[0] % 4 {
        0 => Instruction::Return(value + 1),
        1 => Instruction::Jump(value + 17),
        2 => Instruction::Match(value % 510 + 2),
        _ => Instruction::Default(value + 1),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 1 == 0 {
        check_asmap_bytes(rest);
        return;
    }
    let program: Vec<Instruction> = rest.chunks_exact(3).map(instruction).collect();
    if !program.is_empty() {
        check_asmap_bytes(&pack(&assemble_bits(&program)));
    }
});

//! A chunked body, read by hyper's own state machine (`ChunkedState` in hyper 1.12's
//! `proto/h1/decode.rs`), byte for byte: a size in hex of any length that fits in 64 bits
//! (leading zeros included), optional spaces or tabs, an extension up to CR, then LF; the data
//! and CRLF; after the last chunk, trailer lines that end only at CRLF (a bare LF inside one is
//! part of it) until an empty line. Nothing is buffered.
//!
//! Where hyper is stricter than this (its limits on extension and trailer bytes, and trailers
//! it cannot parse) it ends the connection, so no request follows; where this is stricter than
//! hyper, the guard refuses every later request. Either way the two never disagree on where
//! the next head starts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
}

/// What reading some bytes of a chunked body came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// All of the bytes belong to the body, which goes on in this state.
    More(Chunked),
    /// The body ended after this many of the bytes.
    Done(usize),
    /// hyper would fail the body here.
    Malformed,
}

impl Chunked {
    /// Read `data`, the next bytes of the body; `size` is the chunk size being read.
    pub(super) fn read(mut self, size: &mut u64, data: &[u8]) -> Step {
        let mut i = 0;
        while i < data.len() {
            if let Chunked::Data(left) = self {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                i += take;
                let left = left - take as u64;
                self = if left == 0 {
                    Chunked::DataCr
                } else {
                    Chunked::Data(left)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            self = match self.byte(size, b) {
                Some(Some(next)) => next,
                Some(None) => return Step::Done(i),
                None => return Step::Malformed,
            };
        }
        Step::More(self)
    }

    /// One byte outside chunk data: the next state, `Some(None)` at the end of the body,
    /// `None` where hyper fails the body.
    fn byte(self, size: &mut u64, b: u8) -> Option<Option<Chunked>> {
        use Chunked::*;
        let next = match (self, b) {
            (Start | Size, _) if hex(b).is_some() => {
                let d = hex(b)?;
                *size = size.checked_mul(16)?.checked_add(d)?;
                Size
            }
            (Size | SizeLws, b' ' | b'\t') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws | Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return None,
            (Extension, _) => Extension,
            (SizeLf, b'\n') if *size == 0 => EndCr,
            (SizeLf, b'\n') => Data(std::mem::take(size)),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            (EndCr | Trailer, _) if b != b'\r' => Trailer,
            (Trailer, _) => TrailerLf,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => return Some(None),
            _ => return None,
        };
        Some(Some(next))
    }
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(data: &[u8]) -> Step {
        let mut size = 0;
        Chunked::Start.read(&mut size, data)
    }

    #[test]
    fn chunked_bodies_end_where_hyper_ends_them() {
        let cases: &[&[u8]] = &[
            b"0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            b"00000000000000000000005\r\nhello\r\n0000\r\n\r\n",
            b"A\r\n0123456789\r\n0\r\n\r\n",
            b"5 \t;ext=\"a b\"\r\nhello\r\n0;x\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n",
            b"0\r\nX: a\nb\r\n\r\n",
            b"ffffffffffffffff\r\n",
        ];
        for c in cases {
            let end = match body(c) {
                Step::Done(n) => n,
                Step::More(Chunked::Data(_)) => c.len(),
                other => panic!("{other:?} for {:?}", String::from_utf8_lossy(c)),
            };
            assert_eq!(end, c.len(), "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn a_bare_lf_in_a_trailer_does_not_end_it() {
        // hyper reads `X: a\n` and the line after it as one trailer: the body goes on.
        let data = b"0\r\nX: a\n\r\nGET /decoy HTTP/1.1\r\n\r\nrest";
        assert_eq!(body(data), Step::Done(data.len() - 4));
    }

    #[test]
    fn what_hyper_refuses_is_malformed() {
        for bad in [
            &b"\r\n"[..],
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\rX",
            b"x\r\n",
            b"5 5\r\n",
            b"5;a\nb\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\rX",
            b"0\r\nX: 1\rY",
        ] {
            assert_eq!(
                body(bad),
                Step::Malformed,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn any_split_reads_the_same() {
        let data = b"3;e\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        for i in 0..data.len() {
            let mut size = 0;
            let Step::More(st) = Chunked::Start.read(&mut size, &data[..i]) else {
                panic!("ended early at {i}");
            };
            assert_eq!(
                st.read(&mut size, &data[i..]),
                Step::Done(data.len() - i),
                "{i}"
            );
        }
    }
}

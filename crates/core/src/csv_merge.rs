//! CSV framing and merging, byte for byte. Each source file's header record
//! is found with a real CSV parser (csv-core), so a quoted newline inside a
//! header or a row never splits it; data rows are copied exactly as they
//! are, never re-quoted, each ending with the header's line ending. The
//! rules: the first file's header is the header; a UTF-8 BOM is dropped;
//! CRLF and LF are both accepted, and the output has one line ending, the
//! header's (a missing final newline is added with it); an empty or
//! header-only file adds no row; a file whose header differs, or that ends
//! inside a quoted field, is skipped; a row whose field count differs is
//! kept and counted.

use csv_core::{ReadRecordResult, Reader};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One record's place in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Start of the record's first byte (blank lines before it excluded).
    start: usize,
    /// End of the record's content, terminator excluded.
    content_end: usize,
    /// End of the record including its terminator.
    end: usize,
    fields: usize,
}

/// What the framer appends to every file: a newline, one record and its
/// newline. A file that ends outside quotes keeps its own records and the
/// probe stays a record of its own; a file that ends inside a quoted field
/// swallows the probe into its last record. So one pass finds both the
/// records and whether the file ends inside quotes.
const PROBE: &[u8] = b"\nz\n";

/// Splits files into records with one csv-core reader and one set of
/// buffers for the whole merge: building csv-core's reader (its DFA) and
/// allocating its buffers per file cost more CPU than parsing a one-row
/// file (docs/performance.md).
#[derive(Debug)]
struct Framer {
    reader: Reader,
    input: Vec<u8>,
    output: Vec<u8>,
    ends: Vec<usize>,
    records: Vec<Record>,
}

impl Default for Framer {
    fn default() -> Self {
        // csv-core's `Reader::default()` has no DFA built: it never reads.
        Self { reader: Reader::new(), input: Vec::new(), output: Vec::new(), ends: Vec::new(), records: Vec::new() }
    }
}

impl Framer {
    /// Frames `data` into `self.records` and answers whether it ends outside
    /// quotes. A file that ends inside a quoted field is left with whatever
    /// records it has, its last swallowing everything after the quote.
    fn frame(&mut self, data: &[u8]) -> bool {
        self.input.clear();
        self.input.extend_from_slice(data);
        self.input.extend_from_slice(PROBE);
        self.records.clear();
        self.reader.reset();
        split_records(&mut self.reader, &self.input, &mut self.output, &mut self.ends, &mut self.records);
        let closed = self.records.last().is_some_and(|last| last.start >= data.len());
        if closed {
            self.records.pop();
            // The file's last record may have taken the probe's newline as
            // its terminator: it has none of its own.
            if let Some(last) = self.records.last_mut() {
                last.end = last.end.min(data.len());
                last.content_end = last.content_end.min(data.len());
            }
        }
        closed
    }
}

/// Splits `data` into `records`. csv-core reports how many bytes each
/// record consumed; the content and terminator are recovered from those
/// bytes. `output` and `ends` are csv-core's scratch buffers, grown as
/// needed and kept for the next call.
fn split_records(
    reader: &mut Reader,
    data: &[u8],
    output: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    records: &mut Vec<Record>,
) {
    // An unquoted record's output is its bytes less its delimiters: the
    // whole input always fits, so the buffer rarely grows mid-record.
    if output.len() < data.len().max(64) {
        output.resize(data.len().max(64), 0);
    }
    if ends.len() < 64 {
        ends.resize(64, 0);
    }
    let mut pos = 0;
    // A record may take several calls (the flush at end of input, a grown
    // buffer); its output and field ends accumulate across them.
    let (mut out_len, mut ends_len) = (0, 0);
    let mut record_start: Option<usize> = None;
    loop {
        let input = &data[pos..];
        let (result, nin, nout, nends) = reader.read_record(input, &mut output[out_len..], &mut ends[ends_len..]);
        out_len += nout;
        ends_len += nends;
        if record_start.is_none() {
            // Terminator bytes left over from the previous record, or blank
            // lines, come before the record's first byte.
            let skipped = input.iter().take(nin).take_while(|b| **b == b'\n' || **b == b'\r').count();
            if skipped < nin || matches!(result, ReadRecordResult::Record) {
                record_start = Some(pos + skipped);
            }
        }
        pos += nin;
        match result {
            // Input is handed over whole; an empty slice tells csv-core the
            // input ended, which flushes a last record without a terminator.
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull => {
                let grown = output.len() * 2;
                output.resize(grown, 0);
            }
            ReadRecordResult::OutputEndsFull => {
                let grown = ends.len() * 2;
                ends.resize(grown, 0);
            }
            ReadRecordResult::Record => {
                let start = record_start.take().unwrap_or(pos);
                let mut end = pos;
                // A CRLF may be split: csv-core stops at the CR and eats the LF
                // with the next record; the LF belongs to this one.
                if end > 0 && data[end - 1] == b'\r' && data.get(end) == Some(&b'\n') {
                    end += 1;
                }
                let trailing = data[start..end].iter().rev().take_while(|b| **b == b'\n' || **b == b'\r').count();
                let content_end = end - trailing;
                records.push(Record { start, content_end, end, fields: ends_len });
                pos = pos.max(end);
                out_len = 0;
                ends_len = 0;
            }
            ReadRecordResult::End => break,
        }
    }
}

/// What one source file contributed to a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Its data rows were appended; `odd_rows` of them have a field count
    /// other than the header's.
    Merged { rows: u64, odd_rows: u64 },
    /// Zero bytes (or only a BOM and blank lines): no header, no rows.
    Empty,
    /// A header and no data rows.
    HeaderOnly,
    /// Its header is not the merge's header; nothing was appended.
    HeaderMismatch { expected: String, found: String },
    /// It ends inside a quoted field (a truncated upload, a stray `"`);
    /// nothing was appended. Appended, the newline after it and every later
    /// row would land inside that field.
    UnclosedQuote,
}

/// Headers longer than this are cut in reports: a "header" that is really a
/// whole file on one line must not be copied into report.json.
const HEADER_PREVIEW_BYTES: usize = 200;

fn preview(header: &[u8]) -> String {
    if header.len() <= HEADER_PREVIEW_BYTES {
        return String::from_utf8_lossy(header).into_owned();
    }
    format!("{}… ({} bytes)", String::from_utf8_lossy(&header[..HEADER_PREVIEW_BYTES]), header.len())
}

/// Appends source files to one merged CSV held in a buffer the caller
/// drains (to upload a part) whenever it likes.
#[derive(Debug, Default)]
pub struct CsvMerger {
    header: Option<Vec<u8>>,
    header_fields: usize,
    terminator: Vec<u8>,
    buffer: Vec<u8>,
    rows: u64,
    bytes: u64,
    framer: Framer,
}

impl CsvMerger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A merger whose header is fixed in advance and written at once: the
    /// run's header, so every batch of a run agrees on it, or the header of
    /// earlier merges' outputs being concatenated. `header` is a header
    /// record, with or without its line ending (LF when without).
    pub fn with_header(header: &[u8]) -> Self {
        let mut merger = Self::new();
        let data = header.strip_prefix(BOM).unwrap_or(header);
        // Like a pushed file that ends inside quotes, such a header would
        // swallow every row after it; the first pushed file's header is used.
        let closed = merger.framer.frame(data);
        if let Some(first) = merger.framer.records.first().copied().filter(|_| closed) {
            let record = &data[first.start..first.content_end];
            merger.header = Some(record.to_vec());
            merger.header_fields = first.fields;
            merger.terminator = terminator_of(&data[first.content_end..first.end]);
            merger.write(record);
            merger.write_terminator();
        }
        merger
    }

    /// The header record with its line ending, as written to the output.
    pub fn header_line(&self) -> Option<Vec<u8>> {
        self.header.as_ref().map(|h| [h.as_slice(), &self.terminator].concat())
    }

    /// The header record, without its terminator, once known.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes produced so far, drained or not.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Takes what has been produced since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buffer)
    }

    /// Appends one source file.
    pub fn push(&mut self, data: &[u8]) -> FileOutcome {
        let data = data.strip_prefix(BOM).unwrap_or(data);
        let closed = self.framer.frame(data);
        // The records leave the framer while `self` is written (taking a
        // Vec allocates nothing), and go back with their capacity.
        let records = std::mem::take(&mut self.framer.records);
        let outcome = self.append(data, &records, closed);
        self.framer.records = records;
        outcome
    }

    fn append(&mut self, data: &[u8], records: &[Record], closed: bool) -> FileOutcome {
        let Some(first) = records.first() else { return FileOutcome::Empty };
        if !closed {
            return FileOutcome::UnclosedQuote;
        }
        let header = &data[first.start..first.content_end];
        match &self.header {
            None => {
                self.terminator = terminator_of(&data[first.content_end..first.end]);
                self.header = Some(header.to_vec());
                self.header_fields = first.fields;
                self.write(header);
                self.write_terminator();
            }
            Some(expected) if expected.as_slice() != header => {
                return FileOutcome::HeaderMismatch { expected: preview(expected), found: preview(header) };
            }
            Some(_) => {}
        }
        if records.len() == 1 {
            return FileOutcome::HeaderOnly;
        }
        let mut odd_rows = 0;
        for record in &records[1..] {
            // Every row ends as the header does, whatever its file used: an
            // output of CRLF and LF rows is refused by strict readers
            // (DuckDB's default). Newlines inside quotes are content, kept.
            self.write(&data[record.start..record.content_end]);
            self.write_terminator();
            if record.fields != self.header_fields {
                odd_rows += 1;
            }
        }
        let rows = (records.len() - 1) as u64;
        self.rows += rows;
        FileOutcome::Merged { rows, odd_rows }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
        self.bytes += bytes.len() as u64;
    }

    fn write_terminator(&mut self) {
        self.buffer.extend_from_slice(&self.terminator);
        self.bytes += self.terminator.len() as u64;
    }
}

/// The header's line ending is the merge's: a header without one (a
/// header-only file with no final newline) gives LF.
fn terminator_of(bytes: &[u8]) -> Vec<u8> {
    if bytes.is_empty() { b"\n".to_vec() } else { bytes.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(files: &[&[u8]]) -> (String, Vec<FileOutcome>) {
        let mut merger = CsvMerger::new();
        let outcomes = files.iter().map(|f| merger.push(f)).collect();
        (String::from_utf8_lossy(&merger.take()).into_owned(), outcomes)
    }

    #[test]
    fn header_once_rows_in_order() {
        let (out, outcomes) = merge(&[b"a,b\n1,2\n", b"a,b\n3,4\n"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n");
        assert_eq!(outcomes[0], FileOutcome::Merged { rows: 1, odd_rows: 0 });
    }

    #[test]
    fn bom_is_dropped_and_headers_still_match() {
        let (out, outcomes) = merge(&[b"\xEF\xBB\xBFa,b\n1,2\n", b"a,b\n3,4\n", b"\xEF\xBB\xBFa,b\n5,6\n"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n5,6\n");
        assert!(outcomes.iter().all(|o| matches!(o, FileOutcome::Merged { rows: 1, .. })));
    }

    #[test]
    fn crlf_and_lf_mixed() {
        let (out, outcomes) = merge(&[b"a,b\r\n1,2\r\n", b"a,b\n3,4\n", b"a,b\r\n5,6"]);
        assert_eq!(out, "a,b\r\n1,2\r\n3,4\r\n5,6\r\n", "every row ends as the header does");
        let (out, _) = merge(&[b"a,b\n1,2\n", b"a,b\r\n3,4\r\n\"x\r\ny\",5\r\n"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n\"x\r\ny\",5\n", "a newline inside quotes is content, kept");
        assert_eq!(outcomes[2], FileOutcome::Merged { rows: 1, odd_rows: 0 });
    }

    #[test]
    fn quoted_fields_pass_through_byte_for_byte() {
        let row = b"\"x, y\",\"say \"\"hi\"\"\",\"line1\nline2\"\n";
        let mut file = b"a,b,c\n".to_vec();
        file.extend_from_slice(row);
        let (out, outcomes) = merge(&[&file]);
        assert_eq!(out.as_bytes(), file.as_slice());
        assert_eq!(outcomes[0], FileOutcome::Merged { rows: 1, odd_rows: 0 });
    }

    #[test]
    fn a_quoted_newline_inside_the_header() {
        let (out, outcomes) = merge(&[b"\"a\nb\",c\n1,2\n", b"\"a\nb\",c\r\n3,4\r\n"]);
        assert_eq!(out, "\"a\nb\",c\n1,2\n3,4\n");
        assert_eq!(outcomes[1], FileOutcome::Merged { rows: 1, odd_rows: 0 });
    }

    #[test]
    fn missing_final_newline_is_added() {
        let (out, _) = merge(&[b"a,b\n1,2", b"a,b\n3,4"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n");
    }

    #[test]
    fn empty_and_header_only_files_add_no_row() {
        let (out, outcomes) = merge(&[b"", b"a,b\n", b"a,b", b"\xEF\xBB\xBF", b"\n\n", b"a,b\n1,2\n"]);
        assert_eq!(out, "a,b\n1,2\n");
        assert_eq!(
            outcomes,
            vec![
                FileOutcome::Empty,
                FileOutcome::HeaderOnly,
                FileOutcome::HeaderOnly,
                FileOutcome::Empty,
                FileOutcome::Empty,
                FileOutcome::Merged { rows: 1, odd_rows: 0 }
            ]
        );
    }

    #[test]
    fn a_different_header_is_skipped() {
        let (out, outcomes) = merge(&[b"a,b\n1,2\n", b"a,c\n9,9\n", b"a,b\n3,4\n"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n");
        assert_eq!(outcomes[1], FileOutcome::HeaderMismatch { expected: "a,b".into(), found: "a,c".into() });
    }

    #[test]
    fn odd_field_counts_are_kept_and_counted() {
        let (out, outcomes) = merge(&[b"a,b\n1,2,3\n4\n5,6\n"]);
        assert_eq!(out, "a,b\n1,2,3\n4\n5,6\n");
        assert_eq!(outcomes[0], FileOutcome::Merged { rows: 3, odd_rows: 2 });
    }

    #[test]
    fn blank_lines_between_rows_are_not_rows() {
        let (out, outcomes) = merge(&[b"a,b\n1,2\n\n3,4\n\n"]);
        assert_eq!(out, "a,b\n1,2\n3,4\n");
        assert_eq!(outcomes[0], FileOutcome::Merged { rows: 2, odd_rows: 0 });
    }

    #[test]
    fn with_header_appends_without_repeating_it() {
        let mut merger = CsvMerger::with_header(b"a,b\r\n");
        assert_eq!(merger.push(b"a,b\r\n1,2\r\n"), FileOutcome::Merged { rows: 1, odd_rows: 0 });
        assert_eq!(merger.push(b"a,b\n3,4"), FileOutcome::Merged { rows: 1, odd_rows: 0 });
        assert_eq!(merger.take(), b"a,b\r\n1,2\r\n3,4\r\n");
        assert_eq!(CsvMerger::with_header(b"x").header_line().as_deref(), Some(&b"x\n"[..]));
    }

    #[test]
    fn a_huge_mismatched_header_is_cut_in_the_outcome() {
        let huge = vec![b'x'; 1 << 20];
        let (_, outcomes) = merge(&[b"a,b\n1,2\n", &huge]);
        let FileOutcome::HeaderMismatch { found, .. } = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
        assert!(found.len() < 300 && found.ends_with("(1048576 bytes)"), "{found}");
    }

    #[test]
    fn a_file_ending_inside_quotes_is_refused_whole() {
        let (out, outcomes) = merge(&[b"a,b\n1,2\n", b"a,b\n3,\"cut\n4,5", b"a,b\n6,\"7\"\"\n8\"\n", b"a\n\""]);
        assert_eq!(out, "a,b\n1,2\n6,\"7\"\"\n8\"\n");
        assert_eq!(outcomes[1], FileOutcome::UnclosedQuote);
        assert_eq!(outcomes[2], FileOutcome::Merged { rows: 1, odd_rows: 0 });
        assert_eq!(outcomes[3], FileOutcome::UnclosedQuote, "checked before the header is compared");
        let (out, outcomes) = merge(&[b"\"a", b"a\n1\n"]);
        assert_eq!((out.as_str(), &outcomes[0]), ("a\n1\n", &FileOutcome::UnclosedQuote), "no header taken from it");
    }

    #[test]
    fn a_given_header_ending_inside_quotes_is_ignored() {
        let mut merger = CsvMerger::with_header(b"\"");
        assert_eq!(merger.header(), None);
        assert_eq!(merger.push(b"a\n1\n"), FileOutcome::Merged { rows: 1, odd_rows: 0 });
        assert_eq!(merger.take(), b"a\n1\n");
    }

    /// The framing before the probe: each file parsed alone by a fresh
    /// reader, then its last record parsed again with a record after it.
    fn framed_twice(data: &[u8]) -> (Vec<Record>, bool) {
        let parse = |data: &[u8]| {
            let mut records = Vec::new();
            split_records(&mut Reader::new(), data, &mut Vec::new(), &mut Vec::new(), &mut records);
            records
        };
        let records = parse(data);
        let closed = records.last().is_none_or(|last| parse(&[&data[last.start..], b"\nz\n"].concat()).len() >= 2);
        (records, closed)
    }

    #[test]
    fn one_pass_with_the_probe_frames_as_parsing_each_file_twice_did() {
        // Every input of up to 6 bytes over the bytes that matter to framing,
        // through one framer, as a merge reuses it.
        let alphabet = b"a,\"\n\r";
        let mut framer = Framer::default();
        let mut input = Vec::new();
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..alphabet.len().pow(len) {
                input.clear();
                for _ in 0..len {
                    input.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let closed = framer.frame(&input);
                let (records, expected_closed) = framed_twice(&input);
                assert_eq!(closed, expected_closed, "{:?}", String::from_utf8_lossy(&input));
                if closed {
                    assert_eq!(framer.records, records, "{:?}", String::from_utf8_lossy(&input));
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 19_531);
    }

    #[test]
    fn invalid_utf8_and_binary_do_not_panic() {
        let (_, outcomes) = merge(&[b"a,b\n\xFF\xFE,1\n", b"\x00\x01\x02\"\n"]);
        assert_eq!(outcomes[0], FileOutcome::Merged { rows: 1, odd_rows: 0 });
        assert!(matches!(outcomes[1], FileOutcome::HeaderMismatch { .. }));
    }
}

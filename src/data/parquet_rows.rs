//! Parquet (verl format) → JSON rows, through the Arrow reader and `arrow-json`.

use super::{DataError, Row};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;

/// Reads every row of a Parquet file as a JSON object; nested columns (lists, structs)
/// become JSON lists and objects, null fields are left out.
pub(super) fn read(path: &Path) -> Result<Vec<Row>, DataError> {
    let parquet_err = |e: &dyn std::fmt::Display| DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| parquet_err(&e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet_err(&e))?;
        let mut buf = Vec::new();
        {
            let mut writer = arrow_json::LineDelimitedWriter::new(&mut buf);
            writer.write(&batch).map_err(|e| parquet_err(&e))?;
            writer.finish().map_err(|e| parquet_err(&e))?;
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let number = rows.len() + 1;
            let value = serde_json::from_slice(line).map_err(|e| DataError::BadRow {
                path: path.to_path_buf(),
                row: number,
                message: format!("could not convert to JSON: {e}"),
            })?;
            rows.push(Row { number, value });
        }
    }
    Ok(rows)
}

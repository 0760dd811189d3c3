//! libpq connection strings (placeholder until the parser lands).

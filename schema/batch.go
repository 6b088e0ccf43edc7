package schema

import (
	"fmt"

	"github.com/ClickHouse/ch-go/proto"
)

// Batch accumulates flows straight into ClickHouse columns (ch-go proto
// columns), so a batch is encoded to Native format without a second copy
// into row structs. A Batch is reused after Reset; it is not safe for
// concurrent use.
type BatchOf[T any] struct {
	input   proto.Input
	appends []func(*T)
	rows    int
	buf     proto.Buffer
}

// Batch is a batch of flows.
type Batch = BatchOf[Flow]

// NewBatch returns an empty batch holding every column of Columns.
func NewBatch() *Batch { return NewBatchOf(Columns) }

// NewBatchOf returns an empty batch holding cols.
func NewBatchOf[T any](cols []ColumnOf[T]) *BatchOf[T] {
	b := &BatchOf[T]{
		input:   make(proto.Input, len(cols)),
		appends: make([]func(*T), len(cols)),
	}
	for i, c := range cols {
		data, app := c.bind()
		b.input[i] = proto.InputColumn{Name: c.Name, Data: data}
		b.appends[i] = app
	}
	return b
}

// Append adds one row.
func (b *BatchOf[T]) Append(f *T) {
	for _, app := range b.appends {
		app(f)
	}
	b.rows++
}

// Rows is the number of rows held.
func (b *BatchOf[T]) Rows() int { return b.rows }

// Reset empties the batch, keeping its memory.
func (b *BatchOf[T]) Reset() {
	b.input.Reset()
	b.rows = 0
}

// Input exposes the columns, e.g. for a clickhouse-go/ch-go INSERT.
func (b *BatchOf[T]) Input() proto.Input { return b.input }

// Native encodes the batch as one block of ClickHouse's Native format (the
// format of `INSERT ... FORMAT Native` and of file(..., 'Native')). The
// returned slice is valid until the next call.
func (b *BatchOf[T]) Native() ([]byte, error) {
	b.buf.Reset()
	blk := proto.Block{Columns: len(b.input), Rows: b.rows}
	// Version 0: the plain Native format, without the TCP protocol's
	// block info and custom-serialization flags.
	if err := blk.EncodeRawBlock(&b.buf, 0, b.input); err != nil {
		return nil, fmt.Errorf("encode native block: %w", err)
	}
	return b.buf.Buf, nil
}

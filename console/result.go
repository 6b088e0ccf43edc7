package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// result is a JSONCompact answer: column names and types, and rows whose
// values are JSON (ClickHouse quotes 64-bit integers).
type result struct {
	Meta []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"meta"`
	Data [][]json.RawMessage `json:"data"`
}

func decodeResult(out []byte) (*result, error) {
	var r result
	d := json.NewDecoder(bytes.NewReader(out))
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode the engine's JSONCompact answer: %w", err)
	}
	return &r, nil
}

// str is value j of row i as text (strings unquoted).
func (r *result) str(i, j int) string { return rawText(r.Data[i][j]) }

// num is value j of row i as a number (64-bit integers arrive quoted).
func (r *result) num(i, j int) float64 {
	f, _ := strconv.ParseFloat(rawText(r.Data[i][j]), 64)
	return f
}

func rawText(v json.RawMessage) string {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(v)
}

func numericType(t string) bool {
	t = strings.TrimPrefix(strings.TrimSuffix(strings.TrimPrefix(t, "Nullable("), ")"), "LowCardinality(")
	return strings.HasPrefix(t, "UInt") || strings.HasPrefix(t, "Int") || strings.HasPrefix(t, "Float") || strings.HasPrefix(t, "Decimal")
}

// Table is what a page's table shows: columns, and rows whose numbers are
// JSON numbers and everything else text (rendered with textContent).
type Table struct {
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
}

func (r *result) table() Table {
	t := Table{Rows: make([][]any, 0, len(r.Data))}
	num := make([]bool, len(r.Meta))
	for j, m := range r.Meta {
		t.Columns = append(t.Columns, m.Name)
		t.Types = append(t.Types, valueType(m.Type))
		num[j] = numericType(t.Types[j])
	}
	for i, row := range r.Data {
		out := make([]any, len(row))
		for j, v := range row {
			switch {
			case j < len(num) && num[j]:
				out[j] = r.num(i, j)
			case len(v) > 0 && (v[0] == '[' || v[0] == '{'):
				out[j] = v // arrays stay JSON arrays
			default:
				out[j] = r.str(i, j)
			}
		}
		t.Rows = append(t.Rows, out)
	}
	return t
}

// run runs one of the pages' queries and decodes it; elapsed adds its time.
func (c *Console) run(ctx context.Context, sql string, p params, elapsed *time.Duration) (*result, error) {
	if c.deps.Querier == nil {
		return nil, fmt.Errorf("%w: no store to query", errUnavailable)
	}
	start := time.Now()
	out, err := c.deps.Querier.QueryParams(ctx, sql, "JSONCompact", p)
	if elapsed != nil {
		*elapsed += time.Since(start)
	}
	if err != nil {
		return nil, err
	}
	return decodeResult(out)
}

// valueType is the type of a column's values: a rollup's
// SimpleAggregateFunction(any, T) holds values of T, as flows' column does.
func valueType(t string) string {
	if rest, ok := strings.CutPrefix(t, "SimpleAggregateFunction("); ok {
		if _, inner, ok := strings.Cut(rest, ", "); ok {
			return strings.TrimSuffix(inner, ")")
		}
	}
	return t
}

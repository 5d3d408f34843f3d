package main

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// flightStore reads objects from a node's object store, which is an Arrow
// Flight service on the node's gRPC address. Every call carries the
// cluster token as "authorization: Bearer <token>".
type flightStore struct {
	client flight.Client
	auth   string
}

func dialFlight(address, token string) (*flightStore, error) {
	c, err := flight.NewClientWithMiddleware(address, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("arrow flight client for %s: %w", address, err)
	}
	return &flightStore{client: c, auth: "Bearer " + token}, nil
}

func (s *flightStore) Close() error { return s.client.Close() }

// TableSummary is what GET /table answers.
type TableSummary struct {
	ObjectID string   `json:"object_id"`
	Rows     int64    `json:"rows"`
	Batches  int      `json:"batches"`
	Columns  []string `json:"columns"`
	// IDSum is the sum of the int64 column "id" (when there is one): the
	// data itself came through, not only the schema.
	IDSum int64 `json:"id_sum"`
}

// summarize pulls the object with id (40 hex characters, the DoGet
// ticket) and counts its rows.
func (s *flightStore) summarize(ctx context.Context, id string) (*TableSummary, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", s.auth)
	stream, err := s.client.DoGet(ctx, &flight.Ticket{Ticket: []byte(id)})
	if err != nil {
		return nil, err
	}
	reader, err := flight.NewRecordReader(stream)
	if err != nil {
		return nil, err
	}
	defer reader.Release()

	schema := reader.Schema()
	out := &TableSummary{Columns: make([]string, 0, schema.NumFields())}
	for _, f := range schema.Fields() {
		out.Columns = append(out.Columns, f.Name)
	}
	idCol := -1
	if idx := schema.FieldIndices("id"); len(idx) == 1 && schema.Field(idx[0]).Type.ID() == arrow.INT64 {
		idCol = idx[0]
	}
	for reader.Next() {
		batch := reader.RecordBatch()
		out.Batches++
		out.Rows += batch.NumRows()
		if idCol >= 0 {
			ids := batch.Column(idCol).(*array.Int64)
			for i := range ids.Len() {
				if ids.IsValid(i) {
					out.IDSum += ids.Value(i)
				}
			}
		}
	}
	if err := reader.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

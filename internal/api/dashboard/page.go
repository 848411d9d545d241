// Package dashboard holds the live dashboard's page: one HTML file, embedded
// in the supervisor binary, that draws the pipeline from the snapshots
// GET /events streams to it.
package dashboard

import _ "embed"

// Page is the dashboard, served at GET /.
//
//go:embed index.html
var Page []byte

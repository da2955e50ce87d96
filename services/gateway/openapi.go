package main

import (
	_ "embed"
	"encoding/json"
	"fmt"
)

// The OpenAPI v2 document of every service, merged by protoc-gen-openapiv2 (allow_merge) at
// generation time, and the API page that renders it in the browser with no external assets.
var (
	//go:embed gen/openapiv2/cinema.swagger.json
	generatedOpenAPI []byte
	//go:embed docs.html
	docsPage []byte
)

// openAPIDocument is the generated document with what the generator cannot know: the API's
// name and version (the merged file is titled after its first input file) and how to pass a
// token. Built once at start-up; a document that does not parse stops the gateway.
func openAPIDocument() ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(generatedOpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("embedded OpenAPI document: %w", err)
	}
	doc["info"] = map[string]any{
		"title":   "Cinema API",
		"version": "v1",
		"description": "REST/JSON for Cinema's gRPC services (grpc-gateway). Errors are google.rpc.Status " +
			"bodies: {code, message, details}. Send `Authorization: Bearer <JWT>`; reading the " +
			"catalog and the board needs no token. `traceparent` and `x-request-id` are passed on to the services.",
	}
	doc["securityDefinitions"] = map[string]any{
		"bearer": map[string]any{
			"type": "apiKey", "in": "header", "name": "Authorization",
			"description": "A JWT from the identity service, as `Bearer <token>`.",
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

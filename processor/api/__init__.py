"""The admin/query API's contract, without a server: authentication and authorization, request
validation, errors, the declared routes, the OpenAPI document, command ids and the write rate
limit. Clients and the CLI use it too; the server is processor/http."""

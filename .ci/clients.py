"""Python's gql client against a running server, run by .ci/run after
clients.mjs (which stores the person read here).

Usage: python3 .ci/clients.py http://127.0.0.1:PORT/graphql

gql fetches the schema by introspection and validates every document
locally before sending it; results, `node(id:)` and coded errors must come
back as it expects. GRAPHQL_AUTHORIZATION goes with every request.
"""

import os
import sys

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from graphql import GraphQLError

UNIONID = "u-clients-check"


def main(url: str) -> None:
    headers = {}
    if os.environ.get("GRAPHQL_AUTHORIZATION"):
        headers["Authorization"] = os.environ["GRAPHQL_AUTHORIZATION"]
    transport = RequestsHTTPTransport(url=url, headers=headers, retries=0, timeout=30)
    client = Client(transport=transport, fetch_schema_from_transport=True)
    with client as session:
        person = session.execute(
            gql(
                "query PersonCard($u: String!) { person(unionid: $u, refresh: CACHE_ONLY)"
                " { id unionid accounts { id openid nickname } } }"
            ),
            variable_values={"u": UNIONID},
        )["person"]
        assert person["unionid"] == UNIONID, person
        print("ok: a query with variables")

        node = session.execute(
            gql("query Node($id: ID!) { node(id: $id) { __typename id ... on Person { unionid } } }"),
            variable_values={"id": person["id"]},
        )["node"]
        assert node == {"__typename": "Person", "id": person["id"], "unionid": UNIONID}, node
        print("ok: node(id:) returns the object")

        try:
            session.execute(gql("query Bad { apps { noSuchField } }"))
            raise AssertionError("an invalid document was sent")
        except GraphQLError as error:
            assert "noSuchField" in str(error), error
        print("ok: documents validated locally against the introspected schema")

        try:
            session.execute(
                gql(
                    'query Missing { apps { appid } account(appid: "wx0000000000000bad", openid: "x") { openid } }'
                )
            )
            raise AssertionError("an unregistered app was answered without an error")
        except TransportQueryError as error:
            assert error.errors[0]["extensions"]["code"] == "NOT_FOUND", error.errors
            assert error.errors[0]["path"] == ["account"], error.errors
            assert error.data["account"] is None and isinstance(error.data["apps"], list), error.data
        print("ok: a field error nulls that field only, with its code")
    print("python gql checks passed")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http"):
        sys.exit("usage: python3 .ci/clients.py http://127.0.0.1:PORT/graphql")
    main(sys.argv[1])

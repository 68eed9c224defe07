# Run once by the postgres image's entrypoint when a dev shard's data directory is first
# created (/docker-entrypoint-initdb.d). The two roles of every overlay:
#   - cartshard (POSTGRES_USER): owns the database; `cart-store migrate` logs in as it (DDL);
#   - cartshard_app: the runtime role of the gateways, workers and cart-stats. It may read and
#     write the rows of every table the owner creates (through the group cartshard_rw and the
#     default privileges below), and nothing else: no DDL.
# prod does the same through CloudNativePG (k8s/overlays/prod/cnpg-clusters.yaml).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner="$POSTGRES_USER" -v app_user="$CARTSHARD_RUNTIME_USER" -v app_password="$CARTSHARD_RUNTIME_PASSWORD" <<'SQL'
CREATE ROLE cartshard_rw NOLOGIN;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cartshard_rw;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO cartshard_rw;
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password' IN ROLE cartshard_rw;
SQL

// For the type check of the demo scripts (demos/tsconfig.json): `./rso-client.js`, the bundle of the SDK,
// has the SDK's declarations.
export * from "@rso/client";

// Several servers behind one address, as the Python client does it
// (clients/python/buildcontrol_client/load_balancing.py, whose docstring says why each
// call is or is not retried): a target may name several servers
// ("ipv4:10.0.0.1:50051,10.0.0.2:50051", "dns:///build.example:50051"); calls are spread
// with round_robin, and the idempotent ones are tried again on UNAVAILABLE.

export const SERVICE = "buildcontrol.v1.BuildControl";

/** The methods of SERVICE retried on UNAVAILABLE (the same list as the Python client's). */
export const RETRIED_METHODS = [
  "GetBuild",
  "ListBuilds",
  "WatchBuild",
  "Cancel",
  "ListAgents",
  "GetJobLog",
  "FollowJobLog",
  "ListWebhookDeliveries",
];

/** The gRPC service config of the client's channel. */
export function serviceConfig() {
  return {
    loadBalancingConfig: [{ round_robin: {} }],
    methodConfig: [
      {
        name: RETRIED_METHODS.map((method) => ({ service: SERVICE, method })),
        retryPolicy: {
          maxAttempts: 5,
          initialBackoff: "0.1s",
          maxBackoff: "1.0s",
          backoffMultiplier: 2.0,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  };
}

/** The channel options that turn it on (grpc-js retries are on by default). */
export function loadBalancingOptions() {
  return { "grpc.service_config": JSON.stringify(serviceConfig()) };
}

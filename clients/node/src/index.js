// Everything a user of the package needs, from one import.
export * from "./client.js";
export { loadPipelineFile, pipelineRequest } from "./pipeline.js";

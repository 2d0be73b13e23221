// placeholder: the plugin lands in the next commit
export type { DeadlineOptions, RouteDeadlineOptions, RequestDeadline, DeadlinePhase } from './types.js'
export { DeadlineExceededError, ClientDisconnectedError } from './errors.js'
const deadline = null
export default deadline

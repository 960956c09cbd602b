/* One Reacher decision in one call: the per-link torque, angular drag and speed cap, MuJoCo's stages,
 * the semi-implicit Euler update, the reward and the observation, with no Python per physics step.
 *
 * It does not include MuJoCo's headers, so it is tied to no MuJoCo version: Python hands it the
 * addresses of MuJoCo's stage functions (all `void f(const mjModel*, mjData*)`), the model and data
 * pointers, and the MjData arrays it reads and writes as buffers (their memory is fixed for the life
 * of the MjData). The arm layout is the one build_model_xml makes: arm a has links 2a (A) and 2a + 1
 * (B), hinges 4a, 4a + 1 on link A and 4a + 2, 4a + 3 on link B, sites 2a (link B centre) and 2a + 1
 * (hand). See ReacherSim in sim.py for the physics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*Stage)(const void *model, void *data);

enum { FWD_ACCELERATION, FWD_POSITION, FWD_VELOCITY, SENSOR_POS, SENSOR_VEL, NUM_STAGES };

/* The arrays held for the life of the object, with their length per arm and element format. */
enum { XIMAT, CVEL, XAXIS, SITE_XPOS, QPOS, QVEL, QACC, QFRC, SENSORS, INERTIA, BASES, NUM_ARRAYS };
static const char *array_name[NUM_ARRAYS] = {"ximat", "cvel", "xaxis", "site_xpos", "qpos", "qvel",
                                             "qacc_smooth", "qfrc_applied", "sensordata", "inertia",
                                             "bases"};
static const Py_ssize_t array_per_arm[NUM_ARRAYS] = {18, 12, 12, 6, 4, 4, 4, 4, -1, 6, 3}; /* -1: any */

#define OBS_SIZE 33
/* Per arm the observation gathers from a raw row: the sensors (the first three are positions), the
 * goal (3), its speed (1) and the original's constant hand entry (0, 0, 1). */
#define RAW_EXTRA 7
/* The longest raw row: a fixed size (portable C has no variable-length arrays); the model has 29
 * sensor values per arm. */
#define MAX_RAW 64
/* Not every C library defines M_PI (MSVC's does only with _USE_MATH_DEFINES). */
#define PI 3.14159265358979323846

typedef struct {
    PyObject_HEAD
    PyObject *model, *data; /* kept alive: the stages and the arrays point into them */
    const void *m;
    void *d;
    Stage stage[NUM_STAGES];
    Py_buffer array[NUM_ARRAYS];
    int arrays_held;
    Py_ssize_t arms, sensors; /* sensors per arm */
    int gather[OBS_SIZE];
    double sign[OBS_SIZE];
    double dt, torque_scale, drag, joint_speed_guard, orbit_radius, goal_height;
    int steps;
} Physics;

/* A C-contiguous buffer of `count` elements (any number if count < 0) of `format` ("d", "f" or
 * "i"); one clear error if not. */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *format, Py_ssize_t count,
                      int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->format == NULL || strcmp(view->format, format) != 0
        || (count >= 0 && view->len != count * view->itemsize)) {
        if (count >= 0)
            PyErr_Format(PyExc_ValueError,
                         "Reacher physics: %s must be %zd contiguous values of format '%s'", name,
                         count, format);
        else
            PyErr_Format(PyExc_ValueError,
                         "Reacher physics: %s must be contiguous values of format '%s'", name, format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void *address_of(PyObject *obj)
{
    PyObject *address = PyObject_GetAttrString(obj, "_address");
    void *p = address ? PyLong_AsVoidPtr(address) : NULL;
    Py_XDECREF(address);
    return p;
}

static void Physics_dealloc(Physics *self)
{
    for (int i = 0; i < self->arrays_held; i++)
        PyBuffer_Release(&self->array[i]);
    Py_XDECREF(self->model);
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Physics_init(Physics *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"model", "data", "stages", "arrays", "gather", "sign", "arms", "dt",
                               "steps", "torque_scale", "drag", "joint_speed_guard", "orbit_radius",
                               "goal_height", NULL};
    PyObject *model, *data, *stages, *arrays, *gather_obj, *sign_obj;
    if (self->arrays_held) {
        PyErr_SetString(PyExc_RuntimeError, "Reacher physics: already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!O!OOndiddddd", keywords, &model, &data,
                                     &PyTuple_Type, &stages, &PyTuple_Type, &arrays, &gather_obj,
                                     &sign_obj, &self->arms, &self->dt, &self->steps,
                                     &self->torque_scale, &self->drag, &self->joint_speed_guard,
                                     &self->orbit_radius, &self->goal_height))
        return -1;
    if (PyTuple_GET_SIZE(stages) != NUM_STAGES || PyTuple_GET_SIZE(arrays) != NUM_ARRAYS
        || self->arms < 1) {
        PyErr_Format(PyExc_ValueError,
                     "Reacher physics: %d stages, %d arrays and at least one arm expected",
                     NUM_STAGES, NUM_ARRAYS);
        return -1;
    }
    if (!(self->m = address_of(model)) || !(self->d = address_of(data)))
        return -1;
    for (int i = 0; i < NUM_STAGES; i++)
        if (!(self->stage[i] = (Stage)(uintptr_t)PyLong_AsVoidPtr(PyTuple_GET_ITEM(stages, i))))
            return -1;
    for (int i = 0; i < NUM_ARRAYS; i++) {
        if (get_buffer(PyTuple_GET_ITEM(arrays, i), &self->array[i], "d",
                       array_per_arm[i] * self->arms, i <= QFRC, array_name[i]) < 0)
            return -1;
        self->arrays_held = i + 1;
    }
    const Py_ssize_t sensor_values = self->array[SENSORS].len / (Py_ssize_t)sizeof(double);
    self->sensors = sensor_values / self->arms;
    if (self->sensors < 9 || self->sensors * self->arms != sensor_values
        || self->sensors + RAW_EXTRA > MAX_RAW) {
        PyErr_Format(PyExc_ValueError,
                     "Reacher physics: sensordata must hold the same 9 to %d values per arm",
                     MAX_RAW - RAW_EXTRA);
        return -1;
    }
    Py_buffer gather, sign;
    if (get_buffer(gather_obj, &gather, "i", OBS_SIZE, 0, "gather") < 0)
        return -1;
    memcpy(self->gather, gather.buf, sizeof self->gather);
    PyBuffer_Release(&gather);
    if (get_buffer(sign_obj, &sign, "d", OBS_SIZE, 0, "sign") < 0)
        return -1;
    memcpy(self->sign, sign.buf, sizeof self->sign);
    PyBuffer_Release(&sign);
    for (int j = 0; j < OBS_SIZE; j++)
        if (self->gather[j] < 0 || self->gather[j] >= self->sensors + RAW_EXTRA) {
            PyErr_SetString(PyExc_ValueError, "Reacher physics: gather index out of range");
            return -1;
        }
    Py_INCREF(model);
    Py_INCREF(data);
    self->model = model;
    self->data = data;
    return 0;
}

#define ARRAY(i) ((double *)self->array[i].buf)

/* Each link's torque (world frame) plus what the drag and the speed cap remove from its
 * unconstrained angular velocity, as joint forces: a hinge feels the torque of every link it carries
 * along its axis (the rotational Jacobian of a hinge is its world axis). */
static void link_torques(const Physics *self, const double *actions, double max_speed)
{
    const double *ximat = ARRAY(XIMAT), *cvel = ARRAY(CVEL), *axis = ARRAY(XAXIS);
    const double *inertia = ARRAY(INERTIA);
    double *qfrc = ARRAY(QFRC);
    const double dt = self->dt, least = max_speed / self->drag;
    for (Py_ssize_t a = 0; a < self->arms; a++) {
        double total[2][3];
        for (int link = 0; link < 2; link++) {
            const Py_ssize_t l = 2 * a + link;
            const double *r = ximat + 9 * l, *w = cvel + 6 * l, *inert = inertia + 3 * l;
            /* Unity torque (a0, 0, a1) is MuJoCo torque -(a0, a1, 0): the frames are mirrors. */
            const double tau[3] = {-self->torque_scale * actions[2 * l],
                                   -self->torque_scale * actions[2 * l + 1], 0.0};
            double momentum[3], velocity[3];
            for (int j = 0; j < 3; j++) {
                /* In the link's inertia frame: I w_unc = I w + tau dt. */
                const double w_local = w[0] * r[j] + w[1] * r[3 + j] + w[2] * r[6 + j];
                const double impulse =
                    tau[0] * dt * r[j] + tau[1] * dt * r[3 + j] + tau[2] * dt * r[6 + j];
                momentum[j] = w_local * inert[j] + impulse;
                velocity[j] = momentum[j] * (1.0 / inert[j]);
            }
            const double speed = sqrt(velocity[0] * velocity[0] + velocity[1] * velocity[1]
                                      + velocity[2] * velocity[2]);
            /* Drag, then the cap, keep min(drag, cap / speed) of the momentum; what they remove,
             * (keep - 1) I w_unc / dt, is a torque. NaN passes through, as in NumPy's maximum. */
            const double keep = max_speed / (speed < least ? least : speed);
            const double removed = (keep - 1.0) / dt;
            double c[3];
            for (int j = 0; j < 3; j++)
                c[j] = momentum[j] * removed;
            for (int i = 0; i < 3; i++)
                total[link][i] =
                    tau[i] + (r[3 * i] * c[0] + r[3 * i + 1] * c[1] + r[3 * i + 2] * c[2]);
        }
        const double *ax = axis + 12 * a;
        double *f = qfrc + 4 * a;
        for (int j = 0; j < 4; j++) {
            const double *e = ax + 3 * j;
            const double on_a = e[0] * total[0][0] + e[1] * total[0][1] + e[2] * total[0][2];
            const double on_b = e[0] * total[1][0] + e[1] * total[1][1] + e[2] * total[1][2];
            f[j] = j < 2 ? on_a + on_b : on_b; /* link B hangs from all four hinges, A from two */
        }
    }
}

/* Semi-implicit Euler with the joint-speed guard; every joint is a hinge, so qpos and qvel align. */
static void integrate(const Physics *self)
{
    double *qpos = ARRAY(QPOS), *qvel = ARRAY(QVEL);
    const double *qacc = ARRAY(QACC), guard = self->joint_speed_guard, dt = self->dt;
    for (Py_ssize_t i = 0; i < 4 * self->arms; i++) {
        const double v = qvel[i] + dt * qacc[i];
        qvel[i] = v < -guard ? -guard : (v > guard ? guard : v);
        qpos[i] = qpos[i] + dt * qvel[i];
    }
}

static void goal_position(const Physics *self, double angle_degrees, double goal[3])
{
    const double rad = angle_degrees * (PI / 180.0);
    goal[0] = self->orbit_radius * sin(rad);
    goal[1] = self->orbit_radius * cos(rad);
    goal[2] = self->goal_height;
}

static void observe(const Physics *self, const double *goal_angle, const double *goal_step,
                    float *obs)
{
    self->stage[SENSOR_POS](self->m, self->d);
    self->stage[SENSOR_VEL](self->m, self->d);
    const double *sensordata = ARRAY(SENSORS), *bases = ARRAY(BASES);
    const Py_ssize_t s = self->sensors;
    double raw[MAX_RAW];
    for (Py_ssize_t a = 0; a < self->arms; a++) {
        memcpy(raw, sensordata + s * a, s * sizeof(double));
        for (int p = 0; p < 9; p++)
            raw[p] -= bases[3 * a + p % 3];
        goal_position(self, goal_angle[a], raw + s);
        raw[s + 3] = goal_step[a];
        raw[s + 4] = 0.0;
        raw[s + 5] = 0.0;
        raw[s + 6] = 1.0;
        for (int j = 0; j < OBS_SIZE; j++)
            obs[OBS_SIZE * a + j] = (float)(raw[self->gather[j]] * self->sign[j]);
    }
}

/* The goal angles and speeds (degrees, degrees per physics step) and the observation output. */
static int goal_and_obs_buffers(const Physics *self, PyObject *angle, PyObject *step, PyObject *obs,
                                Py_buffer view[3])
{
    if (get_buffer(angle, &view[0], "d", self->arms, 1, "goal_angle") < 0)
        return -1;
    if (get_buffer(step, &view[1], "d", self->arms, 0, "goal_step") < 0) {
        PyBuffer_Release(&view[0]);
        return -1;
    }
    if (get_buffer(obs, &view[2], "f", OBS_SIZE * self->arms, 1, "observation") < 0) {
        PyBuffer_Release(&view[0]);
        PyBuffer_Release(&view[1]);
        return -1;
    }
    return 0;
}

static PyObject *Physics_observe(Physics *self, PyObject *args)
{
    PyObject *angle, *step, *obs;
    Py_buffer view[3];
    if (!self->arrays_held) {
        PyErr_SetString(PyExc_RuntimeError, "Reacher physics: not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOO", &angle, &step, &obs)
        || goal_and_obs_buffers(self, angle, step, obs, view) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    observe(self, view[0].buf, view[1].buf, view[2].buf);
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 3; i++)
        PyBuffer_Release(&view[i]);
    Py_RETURN_NONE;
}

static PyObject *Physics_step(Physics *self, PyObject *args)
{
    PyObject *actions_obj, *angle, *step, *obs, *reward_obj;
    double max_speed, reward_distance;
    Py_buffer actions, reward, view[3];
    if (!self->arrays_held) {
        PyErr_SetString(PyExc_RuntimeError, "Reacher physics: not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OOOddOO", &actions_obj, &angle, &step, &max_speed,
                          &reward_distance, &obs, &reward_obj))
        return NULL;
    if (get_buffer(actions_obj, &actions, "d", 4 * self->arms, 0, "actions") < 0)
        return NULL;
    if (get_buffer(reward_obj, &reward, "d", self->arms, 1, "reward") < 0) {
        PyBuffer_Release(&actions);
        return NULL;
    }
    if (goal_and_obs_buffers(self, angle, step, obs, view) < 0) {
        PyBuffer_Release(&actions);
        PyBuffer_Release(&reward);
        return NULL;
    }
    double *goal_angle = view[0].buf, *reward_out = reward.buf;
    const double *goal_step = view[1].buf, *site_xpos = ARRAY(SITE_XPOS), *bases = ARRAY(BASES);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t a = 0; a < self->arms; a++)
        reward_out[a] = 0.0;
    for (int k = 1; k <= self->steps; k++) {
        link_torques(self, actions.buf, max_speed);
        self->stage[FWD_ACCELERATION](self->m, self->d);
        integrate(self);
        self->stage[FWD_POSITION](self->m, self->d);
        self->stage[FWD_VELOCITY](self->m, self->d);
        /* 0.01 for each physics step that ends with the hand within reward_distance of the goal,
         * which turns by its speed every physics step. */
        for (Py_ssize_t a = 0; a < self->arms; a++) {
            double goal[3], distance = 0.0;
            goal_position(self, goal_angle[a] + goal_step[a] * k, goal);
            for (int i = 0; i < 3; i++) {
                const double diff = (site_xpos[6 * a + 3 + i] - bases[3 * a + i]) - goal[i];
                distance += diff * diff;
            }
            reward_out[a] += sqrt(distance) < reward_distance;
        }
    }
    for (Py_ssize_t a = 0; a < self->arms; a++) {
        reward_out[a] = 0.01 * reward_out[a];
        goal_angle[a] = goal_angle[a] + goal_step[a] * self->steps;
    }
    observe(self, goal_angle, goal_step, view[2].buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&actions);
    PyBuffer_Release(&reward);
    for (int i = 0; i < 3; i++)
        PyBuffer_Release(&view[i]);
    Py_RETURN_NONE;
}

static PyMethodDef Physics_methods[] = {
    {"step", (PyCFunction)Physics_step, METH_VARARGS,
     "step(actions, goal_angle, goal_step, max_speed, reward_distance, obs, reward): one decision; "
     "writes the observation and reward, advances goal_angle in place"},
    {"observe", (PyCFunction)Physics_observe, METH_VARARGS,
     "observe(goal_angle, goal_step, obs): runs MuJoCo's sensors and writes the observation"},
    {NULL},
};

static PyTypeObject PhysicsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ddpg.envs.reacher._physics.Physics",
    .tp_doc = "The Reacher's per-decision physics on a MuJoCo model and data built by ReacherSim.",
    .tp_basicsize = sizeof(Physics),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Physics_init,
    .tp_dealloc = (destructor)Physics_dealloc,
    .tp_methods = Physics_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_physics",
    .m_doc = "Compiled Reacher physics: one decision per call.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__physics(void)
{
    if (PyType_Ready(&PhysicsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "Physics", (PyObject *)&PhysicsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

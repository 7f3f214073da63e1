# mmpose meta information of the synthetic keypoint dataset (mmhiri/datasets/synthetic.py,
# generate_keypoints): rotated squares (< 35 degrees, so image-axis corner names stay valid) with
# their four corners and centre. Use as `metainfo=dict(from_file=<this file>)`.
dataset_info = dict(
    dataset_name='synthetic_quads',
    paper_info=dict(author='mmhiri', title='synthetic quadrilaterals', container='', year='2026',
                    homepage=''),
    keypoint_info={
        0: dict(name='top_left', id=0, color=[255, 0, 0], type='upper', swap='top_right'),
        1: dict(name='top_right', id=1, color=[0, 255, 0], type='upper', swap='top_left'),
        2: dict(name='bottom_right', id=2, color=[0, 0, 255], type='lower', swap='bottom_left'),
        3: dict(name='bottom_left', id=3, color=[255, 255, 0], type='lower', swap='bottom_right'),
        4: dict(name='centre', id=4, color=[255, 0, 255], type='upper', swap=''),
    },
    skeleton_info={
        0: dict(link=('top_left', 'top_right'), id=0, color=[255, 128, 0]),
        1: dict(link=('top_right', 'bottom_right'), id=1, color=[255, 128, 0]),
        2: dict(link=('bottom_right', 'bottom_left'), id=2, color=[255, 128, 0]),
        3: dict(link=('bottom_left', 'top_left'), id=3, color=[255, 128, 0]),
    },
    joint_weights=[1., 1., 1., 1., 1.],
    sigmas=[0.025, 0.025, 0.025, 0.025, 0.025])
